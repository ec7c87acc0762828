"""Peer: CPython's smtpd (3.11) with a process_message that counts.

Usage: python3 smtpd_count.py PORT
"""
import asyncore
import signal
import sys
import warnings

warnings.simplefilter("ignore", DeprecationWarning)
import smtpd  # noqa: E402

count = 0


class Counter(smtpd.SMTPServer):
    def listen(self, num):
        # smtpd listens with a backlog of 5: 20 clients connecting at once
        # would then measure the kernel's SYN retransmission timer (1 s,
        # 3 s, 7 s...), not the server. Every other server here has 511+.
        super().listen(1024)

    def process_message(self, peer, mailfrom, rcpttos, data, **kwargs):
        global count
        count += 1


def report(signum, frame):
    print(count, flush=True)


signal.signal(signal.SIGUSR1, report)
Counter(("127.0.0.1", int(sys.argv[1])), None, decode_data=False)
# poll(), not select(): the 500-session workload would pass select's limits
# on a busier machine, and poll is the faster of asyncore's two loops here.
asyncore.loop(timeout=1, use_poll=True)
