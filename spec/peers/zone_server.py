"""A DNS server for the specs that run the standard suites (dnslib), on
127.0.0.1, UDP and TCP on one port. Its zone is the JSON file named on the
command line, in the openspf test suite's zonedata shape:

  {"name": [{"A": "192.0.2.1"}, {"MX": [10, "mx.example"]},
            {"TXT": "text" | ["string", "string"]}, {"SPF": ...},
            {"AAAA": ...}, {"PTR": "name"}, {"CNAME": "name"}, "TIMEOUT"]}

A name with "TIMEOUT" is never answered for the types it has no record
of ("TXT": "NONE" says it has no TXT records); CNAMEs are followed
inside the zone; a name with SPF records and no
TXT ones has them served as TXT too (the suites' convention). A TXT query
for reload.zone.control. reads the file again (and is answered "ok"), so
one server serves every scenario of a suite. Prints "port N".

  zone_server.py ZONE.json
"""
import json
import sys
import time

from dnslib import (AAAA, CNAME, MX, PTR, QTYPE, RCODE, RR, TXT, A, DNSLabel,
                    DNSRecord)
from dnslib.dns import DNSError
from dnsboth import listen_both
from dnslib.server import BaseResolver, DNSHandler, DNSServer


def txt_strings(v):
    if isinstance(v, list):
        return [s.encode("utf-8") if isinstance(s, str) else s for s in v]
    data = v.encode("utf-8") if isinstance(v, str) else v
    # a character-string holds at most 255 bytes
    return [data[i:i + 255] for i in range(0, len(data), 255)] or [b""]


class Zone:
    def __init__(self, path):
        self.path = path
        self.load()

    def load(self):
        with open(self.path) as f:
            raw = json.load(f)
        self.names = {}
        for name, records in raw.items():
            key = str(DNSLabel(name.rstrip("."))).lower()
            recs = self.names.setdefault(key, [])
            recs.extend(records)
        for key, recs in self.names.items():
            kinds = [next(iter(r)) for r in recs if isinstance(r, dict)]
            if "SPF" in kinds and "TXT" not in kinds:
                recs.extend({"TXT": r["SPF"]} for r in list(recs)
                            if isinstance(r, dict) and "SPF" in r)


class Resolver(BaseResolver):
    def __init__(self, zone):
        self.zone = zone

    def resolve(self, request, handler):
        reply = request.reply()
        qname = str(request.q.qname)
        name = qname.lower()
        qtype = QTYPE[request.q.qtype]
        if name == "reload.zone.control.":
            self.zone.load()
            reply.add_answer(RR(qname, QTYPE.TXT, ttl=0, rdata=TXT("ok")))
            return reply
        recs = self.zone.names.get(name)
        if recs is None:
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        # CNAMEs are followed inside the zone, as a recursive server does
        for _ in range(8):
            cname = [r["CNAME"] for r in recs
                     if isinstance(r, dict) and "CNAME" in r]
            if not cname or qtype == "CNAME":
                break
            reply.add_answer(RR(qname, QTYPE.CNAME, ttl=60, rdata=CNAME(cname[0])))
            qname = cname[0]
            recs = self.zone.names.get(str(DNSLabel(qname.rstrip("."))).lower())
            if recs is None:
                reply.header.rcode = RCODE.NXDOMAIN
                return reply
        answers = []
        for r in recs:
            if not isinstance(r, dict):
                continue
            kind, v = next(iter(r.items()))
            if kind != qtype:
                continue
            rd = None
            if kind == "A":
                rd = A(v)
            elif kind == "AAAA":
                rd = AAAA(v)
            elif kind == "MX":
                rd = MX(v[1], v[0])
            elif kind == "TXT" and v != "NONE":   # NONE: no TXT, no copy
                rd = TXT(txt_strings(v))
            elif kind == "PTR":
                rd = PTR(v)
            elif kind == "CNAME":
                rd = CNAME(v)
            if rd is not None:
                answers.append(RR(qname, getattr(QTYPE, kind), ttl=60, rdata=rd))
        # "TIMEOUT": what the name does not have is never answered
        if not answers and "TIMEOUT" in recs:
            raise DNSError("never answered")
        for rr in answers:
            reply.add_answer(rr)
        return reply


class Handler(DNSHandler):
    def get_reply(self, data):
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        out = reply.pack()
        if self.protocol == "udp" and len(out) > 1232:
            short = request.reply()
            short.header.tc = 1
            out = short.pack()
        return out


class Quiet:
    def __getattr__(self, name):
        return lambda *a, **k: None


def main():
    resolver = Resolver(Zone(sys.argv[1]))
    udp, tcp, port = listen_both(resolver, Handler, Quiet())
    udp.start_thread()
    tcp.start_thread()
    sys.stdout.write("port %d\n" % port)
    sys.stdout.flush()
    deadline = time.time() + 900
    while time.time() < deadline and udp.isAlive():
        time.sleep(0.2)


if __name__ == "__main__":
    main()
