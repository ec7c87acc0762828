# TLS peer of the bench: aiosmtpd with STARTTLS (an SSL context) and an
# authenticator that takes bench/bench; a handler that counts messages.
# Usage: aiosmtpd_tls.py PORT CERT KEY
import asyncio
import signal
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
count = 0


class Counter:
    async def handle_DATA(self, server, session, envelope):
        global count
        count += 1
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == b"bench" and auth_data.password == b"bench")
    return AuthResult(success=ok)


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
ctl = Controller(Counter(), hostname="127.0.0.1", port=port, tls_context=ctx,
                 authenticator=authenticator)
ctl.start()
signal.signal(signal.SIGUSR1, lambda *a: print(count, flush=True))
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
print("ready", flush=True)
try:
    asyncio.get_event_loop().run_forever()
except (KeyboardInterrupt, SystemExit):
    pass
