"""Sends one message with smtplib, built by the email package.

  send_mail.py PORT   (stdin: {"from": ..., "to": ..., "subject": ..., "text": ..., "html": ...})
"""
import json
import smtplib
import sys
from email.message import EmailMessage

port, t = int(sys.argv[1]), json.load(sys.stdin)
m = EmailMessage()
m["From"], m["To"], m["Subject"] = t["from"], t["to"], t["subject"]
m.set_content(t.get("text", "hello"))
if t.get("html"):
    m.add_alternative(t["html"], subtype="html")
with smtplib.SMTP("127.0.0.1", port, timeout=10) as s:
    s.send_message(m)
