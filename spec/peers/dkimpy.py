"""dkimpy (Debian's python3-dkim) for the DKIM specs, keys looked up on
the DNS server at 127.0.0.1:PORT:

  dkimpy.py sign DOMAIN SELECTOR KEY.pem [length] [sha1] [ed25519]  < msg
      prints the DKIM-Signature field dkimpy makes
  dkimpy.py verify PORT < msg
      prints pass or fail for each DKIM-Signature, top first
"""
import sys

import dkim
import dns.resolver


def main():
    msg = sys.stdin.buffer.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    if sys.argv[1] == "sign":
        domain, selector, keyfile = sys.argv[2:5]
        flags = sys.argv[5:]
        with open(keyfile, "rb") as f:
            key = f.read()
        if "ed25519" in flags:
            # dkimpy takes the 32-byte seed in base64: the end of the
            # PKCS#8 DER inside the PEM
            import base64
            der = base64.b64decode(b"".join(
                line for line in key.splitlines() if not line.startswith(b"-----")))
            key = base64.b64encode(der[-32:])
        alg = b"rsa-sha256"
        if "sha1" in flags:
            alg = b"rsa-sha1"
        if "ed25519" in flags:
            alg = b"ed25519-sha256"
        sig = dkim.sign(msg, selector.encode(), domain.encode(), key,
                        canonicalize=(b"relaxed", b"relaxed"),
                        include_headers=[b"from", b"to", b"subject"],
                        length="length" in flags, signature_algorithm=alg)
        sys.stdout.buffer.write(sig)
        return
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = ["127.0.0.1"]
    resolver.port = int(sys.argv[2])

    def dnsfunc(name, timeout=5):
        try:
            answers = resolver.resolve(name.decode().rstrip("."), "TXT")
        except Exception:
            return b""
        for a in answers:
            return b"".join(a.strings)
        return b""

    d = dkim.DKIM(msg)
    n = sum(1 for line in msg.split(b"\r\n\r\n")[0].split(b"\r\n")
            if line.lower().startswith(b"dkim-signature:"))
    for i in range(n):
        try:
            ok = d.verify(idx=i, dnsfunc=dnsfunc)
        except Exception:
            ok = False
        print("pass" if ok else "fail")


if __name__ == "__main__":
    main()
