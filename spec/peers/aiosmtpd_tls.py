# A TLS + AUTH upstream for the relay specs: aiosmtpd with an SSL context
# and an authenticator that takes relay/pw. Usage:
#   aiosmtpd_tls.py starttls|implicit PORT CERT KEY OUTFILE
# Each message is appended to OUTFILE as one JSON line.
import asyncio
import json
import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

mode, port, cert, key, out = sys.argv[1:6]


class Handler:
    async def handle_DATA(self, server, session, envelope):
        login = getattr(session, "auth_data", None) or session.login_data
        if isinstance(login, (bytes, bytearray)):
            login = login.decode()
        elif isinstance(login, LoginPassword):
            login = login.login.decode()
        with open(out, "a") as f:
            f.write(json.dumps({
                "from": envelope.mail_from, "to": envelope.rcpt_tos,
                "user": login,
                "tls": server.transport.get_extra_info("ssl_object")
                is not None,
                "data": envelope.content.decode("utf-8", "replace"),
            }) + "\n")
        return "250 OK"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (isinstance(auth_data, LoginPassword)
          and auth_data.login == b"relay" and auth_data.password == b"pw")
    return AuthResult(success=ok, auth_data=auth_data.login if ok else None)


ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
if mode == "starttls":
    ctl = Controller(Handler(), hostname="127.0.0.1", port=int(port),
                     tls_context=ctx, require_starttls=True,
                     authenticator=authenticator, auth_required=True)
else:
    ctl = Controller(Handler(), hostname="127.0.0.1", port=int(port),
                     ssl_context=ctx, authenticator=authenticator,
                     auth_required=True, auth_require_tls=False)
ctl.start()
print("ready", flush=True)
try:
    asyncio.get_event_loop().run_forever()
except KeyboardInterrupt:
    pass
