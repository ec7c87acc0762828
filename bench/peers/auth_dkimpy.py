"""bench/auth.lua's dkimpy and pyspf side: the same message checked N
times (SPF with pyspf, both DKIM signatures with dkimpy), DNS answered from
the JSON map given (a warm cache). Prints CPU microseconds per message.

  auth_dkimpy.py RECORDS.json MESSAGE N
"""
import json
import sys
import time

import dkim
import spf

records = json.load(open(sys.argv[1]))
msg = open(sys.argv[2], "rb").read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
n = int(sys.argv[3])


def dnsfunc(name, timeout=5):
    v = records.get(name.decode().rstrip(".") + " TXT")
    return v.encode() if v else b""


def lookup(name, qtype, *args, **kwargs):
    v = records.get(name.rstrip(".") + " " + qtype)
    if v is None:
        return []
    return [((name, qtype), [v.encode()] if qtype == "TXT" else v)]


spf.DNSLookup = lookup
nsig = msg.split(b"\r\n\r\n")[0].lower().count(b"\r\ndkim-signature:") + \
    (1 if msg.lower().startswith(b"dkim-signature:") else 0)


def once():
    r = spf.query("192.0.2.1", "alice@example.com", "mail.example.com").check()[0]
    assert r == "pass", r
    d = dkim.DKIM(msg)
    for i in range(nsig):
        assert d.verify(idx=i, dnsfunc=dnsfunc)


once()
t0 = time.process_time()
for _ in range(n):
    once()
print("%.1f" % ((time.process_time() - t0) / n * 1e6))
