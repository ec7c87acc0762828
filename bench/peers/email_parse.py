"""bench/message.lua's Python side: builds the two sample messages, and
times Python's email package reading them.

  python3 email_parse.py make DIR
  python3 email_parse.py time FILE N   -> "parse_us full_us" per message

parse: email.message_from_bytes(data, policy=email.policy.default)
full:  parse, then for every part of walk(): get_content_type(),
       get_filename(), get_content_charset(), and the body decoded
       (get_payload(decode=True)); plus the Subject and the From
       addresses of the message.
"""
import email
import email.policy
import os
import random
import sys
import time
from email.message import EmailMessage


def make(directory):
    os.makedirs(directory, exist_ok=True)
    rng = random.Random(7)
    words = ["lorem", "ipsum", "dolor", "sit", "amet", "café", "naïve",
             "consectetur", "adipiscing", "elit"]

    def text(n):
        out, size = [], 0
        while size < n:
            line = " ".join(rng.choice(words) for _ in range(11))
            out.append(line)
            size += len(line) + 1
        return "\n".join(out) + "\n"

    small = EmailMessage()
    small["From"] = "Alice Example <alice@example.org>"
    small["To"] = "Bob <bob@example.net>, carol@example.net"
    small["Subject"] = "Quarterly numbers, café edition"
    small["Message-ID"] = "<small@example.org>"
    small.set_content(text(4600))
    with open(os.path.join(directory, "plain-5k.eml"), "wb") as f:
        f.write(small.as_bytes(policy=email.policy.SMTP))

    big = EmailMessage()
    big["From"] = "Alice Example <alice@example.org>"
    big["To"] = "Bob <bob@example.net>"
    big["Subject"] = "The report, with attachments"
    big.set_content(text(20000))
    big.add_alternative("<html><body><p>%s</p></body></html>\n"
                        % text(30000), subtype="html")
    for k, size in enumerate((600000, 150000, 50000)):
        blob = bytes(rng.randrange(256) for _ in range(size))
        big.add_attachment(blob, maintype="application", subtype="pdf",
                           filename="résumé-%d.pdf" % k)
    with open(os.path.join(directory, "multipart-1m.eml"), "wb") as f:
        f.write(big.as_bytes(policy=email.policy.SMTP))


def full(data):
    msg = email.message_from_bytes(data, policy=email.policy.default)
    n = 0
    for part in msg.walk():
        part.get_content_type()
        part.get_filename()
        part.get_content_charset()
        if not part.is_multipart():
            n += len(part.get_payload(decode=True) or b"")
    str(msg["Subject"])
    msg["From"].addresses
    return n


def timeit(path, n):
    with open(path, "rb") as f:
        data = f.read()
    t0 = time.perf_counter()
    for _ in range(n):
        email.message_from_bytes(data, policy=email.policy.default)
    t1 = time.perf_counter()
    for _ in range(n):
        full(data)
    t2 = time.perf_counter()
    print("%.3f %.3f" % ((t1 - t0) / n * 1e6, (t2 - t1) / n * 1e6))


if __name__ == "__main__":
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        timeit(sys.argv[2], int(sys.argv[3]))
