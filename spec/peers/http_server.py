"""An HTTP/1.1 server for the specs (Python's http.server), on 127.0.0.1:
prints "port N" (and "tls N" when given a certificate and its key), then
one line per request. Routes:
  /hello            200 "hello", two Set-Cookie headers
  /echo             the request back as JSON (method, path, headers, body)
  /port             the client's port (the same one: a kept-alive connection)
  /status/N         status N
  /slow             answers after 5 s
  /big              2 MiB
  /headers-forever  a status line, then headers without end
  /redirect         302 to /hello
"""
import json
import socket
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stdout.write("r %s %s\n" % (self.command, self.path))
        sys.stdout.flush()

    def reply(self, status, body, ctype="text/plain", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def route(self):
        p = self.path
        if p == "/hello":
            return self.reply(200, b"hello", extra=[("Set-Cookie", "a=1"),
                                                    ("Set-Cookie", "b=2"),
                                                    ("X-Test", "yes")])
        if p == "/echo":
            data = self.body()
            out = {"method": self.command, "path": p,
                   "headers": {k.lower(): v for k, v in self.headers.items()},
                   "body": data.decode("latin-1")}
            return self.reply(200, json.dumps(out).encode(), "application/json")
        if p == "/port":
            self.body()
            return self.reply(200, str(self.client_address[1]).encode())
        if p.startswith("/status/"):
            self.body()
            return self.reply(int(p.split("/")[2]), b"status")
        if p == "/slow":
            time.sleep(5)
            return self.reply(200, b"late")
        if p == "/big":
            return self.reply(200, b"x" * (2 * 1024 * 1024))
        if p == "/headers-forever":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            try:
                for i in range(10 ** 7):
                    self.wfile.write(b"X-Flood-%d: %s\r\n" % (i, b"y" * 100))
            except OSError:
                pass
            return None
        if p == "/redirect":
            return self.reply(302, b"", extra=[("Location", "/hello")])
        return self.reply(404, b"no such page")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = route


def serve(srv):
    srv.serve_forever()


def main():
    plain = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    plain.daemon_threads = True
    threading.Thread(target=serve, args=(plain,), daemon=True).start()
    sys.stdout.write("port %d\n" % plain.server_address[1])
    if len(sys.argv) == 3:
        tls = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        tls.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(sys.argv[1], sys.argv[2])
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
        threading.Thread(target=serve, args=(tls,), daemon=True).start()
        sys.stdout.write("tls %d\n" % tls.server_address[1])
    sys.stdout.flush()
    time.sleep(600)


if __name__ == "__main__":
    main()
