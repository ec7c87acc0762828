"""Asks pyspf (Debian's python3-spf) for the SPF results of the cases in a
JSON file ([{"ip":, "helo":, "mailfrom":}, ...]) against the DNS server on
127.0.0.1:PORT; prints one result per line, in order.

  pyspf_check.py PORT CASES.json
"""
import json
import sys

import dns.resolver
import spf

resolver = dns.resolver.Resolver(configure=False)
resolver.nameservers = ["127.0.0.1"]
resolver.port = int(sys.argv[1])
resolver.timeout = resolver.lifetime = 1.0
dns.resolver.default_resolver = resolver

with open(sys.argv[2]) as f:
    cases = json.load(f)
for c in cases:
    q = spf.query(c["ip"], c["mailfrom"], c["helo"], timeout=3)
    result = q.check()[0]
    # pyspf's names for the results of RFC 7208
    print({"tempfail": "temperror", "error": "permerror",
           "unknown": "permerror"}.get(result, result))
    sys.stdout.flush()
