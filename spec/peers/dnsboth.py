"""What the specs' DNS servers share: UDP and TCP (dnslib) on one free
port of 127.0.0.1."""
from dnslib.server import DNSServer


def listen_both(resolver, handler, logger):
    """Starts nothing: returns (udp, tcp, port). Another program may hold
    the TCP side of a free UDP port, so it tries again with another."""
    for _ in range(20):
        udp = DNSServer(resolver, port=0, address="127.0.0.1", handler=handler,
                        logger=logger)
        port = udp.server.server_address[1]
        try:
            tcp = DNSServer(resolver, port=port, address="127.0.0.1", tcp=True,
                            handler=handler, logger=logger)
            return udp, tcp, port
        except OSError:
            udp.server.server_close()
    raise SystemExit("no port free for both UDP and TCP")
