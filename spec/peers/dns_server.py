"""A small DNS server for the specs (dnslib), on 127.0.0.1, UDP and TCP on
one port: prints "port N", then one line "q NAME TYPE PROTO" per query.

Its zone, test. (and its reverse names), and the hostile names:
  servfail.test  SERVFAIL      refused.test  REFUSED
  slow.test      no answer     garbage.test  bytes that are not DNS
  loop.test      a name whose compression pointer points at itself
  big.test       a TXT too big for UDP: truncated, then over TCP
  ad.test        an answer with the AD bit set
  noedns.test    FORMERR to a query with an OPT record
"""
import struct
import sys
import threading
import time

from dnslib import (AAAA, CNAME, MX, NS, PTR, QTYPE, RCODE, RR, SOA, SRV,
                    TXT, A, DNSRecord, TLSA)
from dnslib.dns import DNSError
from dnsboth import listen_both
from dnslib.server import DNSHandler, DNSServer, BaseResolver

SOA_RR = RR("test.", QTYPE.SOA, ttl=600,
            rdata=SOA("ns.test.", "hostmaster.test.",
                      (2026120401, 3600, 600, 86400, 30)))

ZONE = {
    ("www.test.", "A"): [A("192.0.2.10"), A("192.0.2.11")],
    ("www.test.", "AAAA"): [AAAA("2001:db8::10")],
    ("test.", "MX"): [MX("mx2.test.", 20), MX("mx1.test.", 10)],
    ("test.", "NS"): [NS("ns.test.")],
    ("test.", "TXT"): [TXT(["v=spf1 ip4:192.0.2.0/24", " -all"])],
    ("mx1.test.", "A"): [A("192.0.2.21")],
    ("mx2.test.", "A"): [A("192.0.2.22")],
    ("_smtp._tcp.test.", "SRV"): [SRV(10, 5, 25, "mx1.test.")],
    ("_25._tcp.mx1.test.", "TLSA"): [TLSA(3, 1, 1, bytes(range(32)))],
    ("alias.test.", "CNAME"): [CNAME("alias2.test.")],
    ("alias2.test.", "CNAME"): [CNAME("www.test.")],
    ("implicit.test.", "A"): [A("192.0.2.30")],
    ("nullmx.test.", "MX"): [MX(".", 0)],
    ("mail.test.", "A"): [A("127.0.0.1")],
    ("1.0.0.127.in-addr.arpa.", "PTR"): [PTR("mail.test.")],
    ("2.0.0.127.in-addr.arpa.", "PTR"): [PTR("liar.test.")],
    ("liar.test.", "A"): [A("192.0.2.99")],
    ("2.0.0.127.bl.test.", "A"): [A("127.0.0.2"), A("127.0.0.4")],
    ("2.0.0.127.bl.test.", "TXT"): [TXT("listed for testing")],
    ("spammer.test.bl.test.", "A"): [A("127.0.0.2")],
    ("ad.test.", "A"): [A("192.0.2.40")],
    ("noedns.test.", "A"): [A("192.0.2.41")],
    ("big.test.", "TXT"): [TXT(["x" * 250] * 12)],
    ("short.test.", "A"): [A("192.0.2.50")],
}
TTL = {"short.test.": 1}
NAMES = {name for name, _ in ZONE}

out = sys.stdout


def log(name, qtype, proto):
    out.write("q %s %s %s\n" % (name, qtype, proto))
    out.flush()


class Resolver(BaseResolver):
    def resolve(self, request, handler):
        reply = request.reply()
        reply.header.ad = 0
        q = request.q
        name, qtype = str(q.qname).lower(), QTYPE[q.qtype]
        if name == "servfail.test.":
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if name == "refused.test.":
            reply.header.rcode = RCODE.REFUSED
            return reply
        if name == "ad.test.":
            reply.header.ad = 1
        cur = name
        for _ in range(8):
            if (cur, qtype) not in ZONE and (cur, "CNAME") in ZONE:
                for rd in ZONE[(cur, "CNAME")]:
                    reply.add_answer(RR(cur, QTYPE.CNAME, rdata=rd, ttl=300))
                cur = str(ZONE[(cur, "CNAME")][0].label).lower()
            else:
                break
        if (cur, qtype) in ZONE:
            for rd in ZONE[(cur, qtype)]:
                reply.add_answer(RR(cur, q.qtype, rdata=rd,
                                    ttl=TTL.get(cur, 300)))
        elif cur in NAMES or cur == "test.":
            reply.add_auth(SOA_RR)              # NODATA
        else:
            reply.header.rcode = RCODE.NXDOMAIN
            reply.add_auth(SOA_RR)
        return reply


class Handler(DNSHandler):
    def get_reply(self, data):
        request = DNSRecord.parse(data)
        name = str(request.q.qname).lower()
        log(name, QTYPE[request.q.qtype], self.protocol)
        if name == "slow.test.":
            raise DNSError("never answered")
        if name == "garbage.test.":
            return data[:2] + b"\x81\x80\x00\x01\x00\x05"
        if name == "loop.test.":
            # the question, then one answer whose name is a pointer to
            # itself
            head = data[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00"
            qsec = request.questions[0].pack()
            off = 12 + len(qsec)
            rr = struct.pack("!H", 0xC000 | off) + b"\x00\x01\x00\x01" \
                + b"\x00\x00\x00\x3c\x00\x04\x7f\x00\x00\x01"
            return head + qsec + rr
        if name == "noedns.test." and request.ar:
            reply = request.reply()
            reply.header.rcode = RCODE.FORMERR
            reply.ar = []
            return reply.pack()
        reply = self.server.resolver.resolve(request, self)
        rdata = reply.pack()
        if self.protocol == "udp" and len(rdata) > 1232:
            # the question kept (dnslib's truncate() drops it)
            short = request.reply()
            short.header.tc = 1
            short.header.ad = 0
            rdata = short.pack()
        return rdata


class Quiet:
    def __getattr__(self, name):
        return lambda *a, **k: None


def main():
    resolver = Resolver()
    udp, tcp, port = listen_both(resolver, Handler, Quiet())
    udp.start_thread()
    tcp.start_thread()
    out.write("port %d\n" % port)
    out.flush()
    # ends when the spec kills it, or after 10 minutes at most
    deadline = time.time() + 600
    while time.time() < deadline and udp.isAlive():
        time.sleep(0.2)


if __name__ == "__main__":
    main()
