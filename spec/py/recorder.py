"""CPython's smtpd as a reference peer for the differential spec.

Usage: recorder.py OUTFILE [--smtputf8] [--decode] [--size N]

Listens on 127.0.0.1:0, prints the port, and appends every
process_message call to OUTFILE as one Lua table constructor per line.
"""
import sys
import warnings

warnings.simplefilter("ignore")
import asyncore  # noqa: E402
import smtpd  # noqa: E402


def lua_str(v):
    if v is None:
        return "nil"
    if isinstance(v, str):
        v = v.encode("utf-8", "surrogateescape")
    out = []
    for c in v:
        if 32 <= c < 127 and c not in (34, 92):
            out.append(chr(c))
        else:
            out.append("\\%03d" % c)
    return '"' + "".join(out) + '"'


def lua_list(items):
    return "{" + ",".join(lua_str(i) for i in items) + "}"


class Recorder(smtpd.SMTPServer):
    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        parts = [
            "peer_host=" + lua_str(peer[0]),
            "mailfrom=" + lua_str(mailfrom),
            "rcpttos=" + lua_list(rcpttos),
            "data=" + lua_str(data),
        ]
        if kwargs:
            parts.append("kwargs={mail_options=%s,rcpt_options=%s}" % (
                lua_list(kwargs["mail_options"]),
                lua_list(kwargs["rcpt_options"])))
        else:
            parts.append("kwargs={}")
        with open(sys.argv[1], "a") as f:
            f.write("{" + ",".join(parts) + "},\n")


def main():
    args = sys.argv[2:]
    size = smtpd.DATA_SIZE_DEFAULT
    if "--size" in args:
        size = int(args[args.index("--size") + 1])
    server = Recorder(("127.0.0.1", 0), None, data_size_limit=size,
                      enable_SMTPUTF8="--smtputf8" in args,
                      decode_data="--decode" in args)
    print(server.socket.getsockname()[1], flush=True)
    asyncore.loop()


main()
