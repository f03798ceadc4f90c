#!/usr/bin/env python3
"""Sends one e-mail with Python's smtplib, so tests can check the SMTP server
(tests/tools/smtp_server.py) with a real client: STARTTLS, SMTPS and AUTH included.

  smtp_send.py --port P --from A --to B --subject S [--body TEXT]
               [--starttls CAFILE | --implicit-tls CAFILE] [--auth USER:PASS]

TLS verifies the server's certificate against CAFILE, for the address 127.0.0.1 (the
certificate must name it). Only ever connects to 127.0.0.1.

Exit code 0 when the message was accepted; otherwise 1, with "SMTP <code> <message>" (or
the error) on stderr.

Run with the venv of tests/tools/install: .cache/tools/venv/bin/python.
"""

import argparse
import smtplib
import ssl
import sys
from email.message import EmailMessage


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--from", dest="sender", required=True)
    parser.add_argument("--to", required=True, action="append")
    parser.add_argument("--subject", required=True)
    parser.add_argument("--body", default="sent by tests/tools/smtp_send.py\n")
    tls = parser.add_mutually_exclusive_group()
    tls.add_argument("--starttls", metavar="CAFILE")
    tls.add_argument("--implicit-tls", metavar="CAFILE")
    parser.add_argument("--auth", metavar="USER:PASS")
    args = parser.parse_args()

    msg = EmailMessage()
    msg["From"] = args.sender
    msg["To"] = ", ".join(args.to)
    msg["Subject"] = args.subject
    msg.set_content(args.body)

    try:
        if args.implicit_tls:
            ctx = ssl.create_default_context(cafile=args.implicit_tls)
            smtp = smtplib.SMTP_SSL("127.0.0.1", args.port, context=ctx, timeout=10)
        else:
            smtp = smtplib.SMTP("127.0.0.1", args.port, timeout=10)
        with smtp:
            smtp.ehlo("rooftop-test-client")
            if args.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=args.starttls))
                smtp.ehlo("rooftop-test-client")
            if args.auth:
                user, _, password = args.auth.partition(":")
                smtp.login(user, password)
            smtp.send_message(msg)
    except smtplib.SMTPResponseException as e:
        print(f"SMTP {e.smtp_code} {e.smtp_error.decode(errors='replace')}", file=sys.stderr)
        return 1
    except smtplib.SMTPRecipientsRefused as e:
        code, text = next(iter(e.recipients.values()))
        print(f"SMTP {code} {text.decode(errors='replace')}", file=sys.stderr)
        return 1
    except (smtplib.SMTPException, OSError) as e:
        print(f"{type(e).__name__}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
