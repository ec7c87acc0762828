"""The corpus and the reference reading for spec/message_spec.lua.

  python3 email_corpus.py gen DIR     writes the corpus, one file a message
  python3 email_corpus.py dump FILE.. prints how Python's email package
                                      (policy=default) reads each file

The corpus mixes messages built with the email package itself (so they
are shaped like what real senders write: alternatives, attachments with
RFC 2231 names, forwarded messages, digests, every transfer encoding and
many charsets) with hand-broken ones (missing boundaries, bad base64,
8-bit and NUL bytes in headers, LF-only lines, invalid types).

The dump is one line per fact: FILE TAB PART TAB FIELD TAB HEX(VALUE),
where PART counts walk() from 1 and VALUE is UTF-8 (bodies: the bytes).
"""
import email
import email.policy
import os
import random
import sys
from email.message import EmailMessage
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.mime.message import MIMEMessage

HEADERS = ["subject", "x-test", "comments", "x-mailer"]
ADDRESS_HEADERS = ["from", "to", "cc", "reply-to"]

WORDS = ["café", "naïve", "Grüße", "žluťoučký", "привет", "日本語", "hello",
         "smörgåsbord", "€uro", "plain", "ascii words", "ΑΒΓ", "x" * 40]
CHARSETS = ["utf-8", "iso-8859-1", "iso-8859-2", "koi8-r", "windows-1252",
            "iso-8859-7", "shift_jis", "gb2312", "utf-8"]
NAMES = ["Alice Example", "Jörg Müller", "Doe, Jane", "O'Brien", "李雷",
         "Zoë \"Z\" Zed", "plain"]


def encodable(text, charset):
    try:
        text.encode(charset)
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def pick_text(rng, charset):
    words = [w for w in WORDS if encodable(w, charset)]
    return " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))


def built(rng, n):
    """Messages written by the email package."""
    out = []
    for i in range(n):
        charset = rng.choice(CHARSETS)
        msg = EmailMessage()
        msg["From"] = "%s <sender%d@example.org>" % (rng.choice(NAMES), i)
        tos = ["%s <r%d@example.net>" % (rng.choice(NAMES), k)
               for k in range(rng.randint(1, 3))]
        msg["To"] = ", ".join(tos)
        if rng.random() < 0.3:
            msg["Cc"] = "Team: a%d@x.example, b%d@x.example;" % (i, i)
        msg["Subject"] = pick_text(rng, "utf-8")
        msg["X-Test"] = "case %d %s" % (i, pick_text(rng, "utf-8"))
        body = pick_text(rng, charset) + "\n" + "line two\n" * rng.randint(0, 3)
        cte = rng.choice([None, "base64", "quoted-printable", "8bit"])
        try:
            if cte:
                msg.set_content(body, charset=charset, cte=cte)
            else:
                msg.set_content(body, charset=charset)
        except (ValueError, UnicodeEncodeError, LookupError):
            msg.set_content(body)
        kind = rng.random()
        if kind < 0.3:
            msg.add_alternative("<p>%s</p>\n" % pick_text(rng, "utf-8"),
                                subtype="html")
        if kind > 0.5:
            fname = rng.choice(["report.pdf", "résumé.pdf", "данные.csv",
                                "a very long file name " * 4 + ".txt",
                                "日本語のファイル.txt", "plain name.txt"])
            data = bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
            msg.add_attachment(data, maintype="application",
                               subtype="octet-stream", filename=fname)
        if kind > 0.8:
            inner = EmailMessage()
            inner["Subject"] = "inner " + pick_text(rng, "utf-8")
            inner["From"] = "inner@example.org"
            inner.set_content("forwarded " + pick_text(rng, "utf-8") + "\n")
            msg.add_attachment(inner)
        out.append(msg.as_bytes(policy=email.policy.SMTP))
    return out


def compat(rng, n):
    """Messages written with the older MIME classes (other shapes)."""
    out = []
    for i in range(n):
        outer = MIMEMultipart(rng.choice(["mixed", "related", "digest"]))
        outer["Subject"] = "compat %d" % i
        outer["From"] = "c%d@example.org" % i
        for k in range(rng.randint(0, 3)):
            if outer.get_content_subtype() == "digest":
                inner = MIMEText("digest entry %d\n" % k)
                inner["Subject"] = "entry %d" % k
                outer.attach(MIMEMessage(inner))
            else:
                charset = rng.choice(["us-ascii", "utf-8", "iso-8859-1"])
                text = pick_text(rng, charset) + "\n"
                outer.attach(MIMEText(text, rng.choice(["plain", "html"]),
                                      charset))
        if rng.random() < 0.3:
            outer.preamble = "This is a multi-part message in MIME format."
            outer.epilogue = "bye"
        out.append(outer.as_bytes())
    return out


HAND = [
    # No close boundary: the last part runs to the end.
    b"Content-Type: multipart/mixed; boundary=b\n\n--b\n\nfirst\n--b\n"
    b"Content-Type: text/plain\n\nsecond, never closed\n",
    # A boundary that never appears: one leaf.
    b"Content-Type: multipart/mixed; boundary=zzz\n\nno parts at all\n",
    # Multipart without a boundary parameter.
    b"Content-Type: multipart/alternative\n\nbody\n",
    # Bad base64 (junk, missing padding).
    b"Content-Transfer-Encoding: base64\n\naGVsbG8*gd29y!bGQ\n",
    # Quoted-printable with bad escapes and soft breaks.
    b"Content-Transfer-Encoding: quoted-printable\n\na=3Db=ZZc=\nd=\r\ne\n",
    # Unknown transfer encoding.
    b"Content-Transfer-Encoding: x-weird\n\nkept as it is\n",
    # An invalid content type: text/plain.
    b"Content-Type: text\n\nbody\n",
    b"Content-Type: /html\n\nbody\n",
    # Parameters: quoted, escaped, RFC 2231 continuations out of order.
    b"Content-Type: text/plain; charset=\"ISO-8859-1\"\n"
    b"Content-Disposition: attachment; filename*1=\"two\"; filename*0=\"one\"\n\nx\n",
    b"Content-Type: application/x; name=\"quo\\\"ted.txt\"\n\nx\n",
    b"Content-Disposition: attachment;\n filename*=iso-8859-1''caf%E9.txt\n\nx\n",
    # Encoded words: adjacent, separated, broken, unknown charset.
    b"Subject: =?utf-8?q?a?= =?utf-8?q?b?=  c =?utf-8?b?w6k=?=\n\nx\n",
    b"Subject: =?utf-8?q?broken\n\nx\n",
    b"Subject: prefix=?utf-8?q?mid?=suffix\n\nx\n",
    b"Subject: =?x-unknown?q?abc?=\n\nx\n",
    b"Subject: =?utf-8*en?q?lang?=\n\nx\n",
    b"Subject: =?UTF-8?Q?under_score?=\n\nx\n",
    # Folding with CRLF and tabs.
    b"Subject: one\r\n\ttwo\r\n  three\r\n\r\nbody\r\n",
    # Address lists.
    b"To: \"Last, First\" <a@b.example>, plain@c.example, Name <d@e.example>\n\nx\n",
    b"To: Group: one@x.example, two@x.example;, three@x.example\n\nx\n",
    b"To: undisclosed-recipients:;\n\nx\n",
    b"From: =?utf-8?q?J=C3=B6rg?= <j@x.example>\n\nx\n",
    b"From: a@b.example (A Comment)\n\nx\n",
    b"Cc: <bare@x.example>\n\nx\n",
    # A header line without a colon ends the headers.
    b"Subject: s\nnot a header line\nX-Test: after\n\nbody\n",
    # Nested multipart.
    b"Content-Type: multipart/mixed; boundary=outer\n\n--outer\n"
    b"Content-Type: multipart/alternative; boundary=inner\n\n--inner\n"
    b"Content-Type: text/plain\n\nplain\n--inner\nContent-Type: text/html\n\n"
    b"<b>html</b>\n--inner--\n--outer\nContent-Type: text/plain\n\nlast\n"
    b"--outer--\n",
    # Boundary with trailing whitespace on its lines.
    b"Content-Type: multipart/mixed; boundary=\"sp\"\n\n--sp  \nContent-Type: "
    b"text/plain\n\nspaced\n--sp--  \n",
    # message/rfc822 with its own parts.
    b"Content-Type: message/rfc822\n\nSubject: inner\nContent-Type: "
    b"multipart/mixed; boundary=q\n\n--q\n\nin\n--q--\n",
    # Header names in odd cases, repeated headers.
    b"sUbJeCt: first\nSUBJECT: second\nX-Test: a\nx-test: b\n\nx\n",
    # Folded encoded words, an encoded word in a quoted display name.
    b"Subject: =?utf-8?q?fol?=\n =?utf-8?q?ded?=\n\nx\n",
    b"To: \"=?utf-8?q?Zo=C3=AB?=\" <z@x.example>\n\nx\n",
    # An mbox envelope line first, CRLF throughout.
    b"From sender@x Mon Nov 23 05:00:00 2026\r\nSubject: env\r\n"
    b"Content-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\n"
    b"Content-Type: text/plain; charset=\"UTF-8\" (a comment)\r\n\r\n"
    b"crlf body\r\n--c--\r\n",
    # A filename given as an encoded word (not RFC 2231).
    b"Content-Type: application/octet-stream\nContent-Disposition: "
    b"attachment; filename=\"=?utf-8?b?w6lsw6k=?=.txt\"\n\nx\n",
    # Base64 with blanks and CRLF, a part without headers.
    b"Content-Type: multipart/mixed; boundary=d\n\n--d\n"
    b"Content-Transfer-Encoding: base64\n\naGVs bG8g\r\nd29y bGQ=\n"
    b"--d\nno headers here\n--d--\n",
    # Content-Type with comments and odd case; duplicate boundary.
    b"Content-Type: (c) Multipart/Mixed (c); BOUNDARY=\"e\"; boundary=f\n\n"
    b"--e\n\none\n--e--\n",
    # Empty message, headers only, body only.
    b"",
    b"Subject: only headers\n",
    b"\nbody only\n",
]


def hand_bytes():
    extra = [
        # 8-bit bytes (UTF-8) in a header.
        "Subject: caf\u00e9 direct\n\nx\n".encode("utf-8"),
        # NUL bytes in a header and a body.
        b"Subject: a\x00b\n\nbody\x00with nul\n",
        # A Latin-1 byte in a header (not UTF-8).
        b"Subject: caf\xe9\n\nx\n",
        # A very long header line.
        b"Subject: " + b"y" * 100000 + b"\n\nx\n",
    ]
    return HAND + extra


def gen(directory):
    rng = random.Random(4242)
    os.makedirs(directory, exist_ok=True)
    n = 0
    for kind, msgs in (("built", built(rng, 120)), ("compat", compat(rng, 40)),
                       ("hand", hand_bytes())):
        for k, data in enumerate(msgs):
            with open(os.path.join(directory, "%s-%03d.eml" % (kind, k)),
                      "wb") as f:
                f.write(data)
            n += 1
    print(n)


def hexs(s):
    if isinstance(s, str):
        s = s.encode("utf-8", "surrogateescape")
    return s.hex()


def dump(files):
    out = sys.stdout
    for path in files:
        name = os.path.basename(path)
        with open(path, "rb") as f:
            msg = email.message_from_bytes(f.read(), policy=email.policy.default)
        for i, part in enumerate(msg.walk(), 1):
            def put(field, value):
                out.write("%s\t%d\t%s\t%s\n" % (name, i, field, hexs(value)))
            put("ctype", part.get_content_type())
            put("multipart", "1" if part.is_multipart() else "0")
            fn = part.get_filename()
            if fn is not None:
                put("filename", fn)
            cs = part.get_content_charset()
            if cs is not None:
                put("charset", cs)
            disp = part.get_content_disposition()
            if disp is not None:
                put("disposition", disp)
            if not part.is_multipart():
                try:
                    payload = part.get_payload(decode=True)
                except Exception as e:   # noqa: BLE001 (reported, compared)
                    payload = ("<error %s>" % type(e).__name__).encode()
                if payload is not None:
                    put("payload", payload)
            for h in HEADERS:
                for k, v in enumerate(part.get_all(h) or []):
                    put("h:%s:%d" % (h, k), str(v))
            for h in ADDRESS_HEADERS:
                j = 0                    # over every such header, in order
                for v in part.get_all(h) or []:
                    for a in getattr(v, "addresses", ()):
                        put("a:%s:%d" % (h, j),
                            a.display_name + "\x00" + a.addr_spec)
                        j += 1
    out.flush()


if __name__ == "__main__":
    if sys.argv[1] == "gen":
        gen(sys.argv[2])
    else:
        dump(sys.argv[2:])
