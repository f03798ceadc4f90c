#!/usr/bin/env python3
"""SMTP server for the integration tests (paging by e-mail), built on aiosmtpd.

Listens on 127.0.0.1 only and delivers nothing anywhere: each accepted message is saved
as --maildir/NNNNNN.eml (sequence number from 000001, the raw bytes as received; written
to a dot-temp name and renamed, so a reader never sees a partial file), then one JSON line
is appended to --maildir/index.jsonl:

  {"seq": 1, "file": "000001.eml", "mail_from": "...", "rcpt_tos": ["..."],
   "tls": false, "auth_user": "..." | null, "received_ms": 1767225600123}

received_ms is the wall clock (Unix epoch, milliseconds) at which the end of DATA
arrived, before the message is written: when the page reached the server (time-to-page
in `cargo bench --bench page`).

Messages refused by --reject-first get a line in --maildir/rejected.jsonl instead (same
fields, no file).

Options:
  --port P                 0 picks a free port
  --auth USER:PASS         require AUTH (PLAIN or LOGIN) with these credentials before MAIL;
                           AUTH is only offered over TLS (STARTTLS or --implicit-tls)
                           unless --allow-plain-auth is given
  --allow-plain-auth       offer AUTH on an unencrypted connection too
  --starttls CERT KEY      offer STARTTLS with this certificate chain and key (PEM)
  --require-starttls       refuse everything but EHLO/STARTTLS/QUIT before STARTTLS
  --implicit-tls CERT KEY  SMTPS: TLS from the first byte
  --reject-first N         answer 451 at the end of DATA to the first N messages

When listening it prints exactly one line to stdout, `READY port=<port>`; its log goes to
stderr. SIGTERM or SIGINT stops it with exit code 0.

Run with the venv of tests/tools/install: .cache/tools/venv/bin/python.
"""

import argparse
import asyncio
import json
import logging
import os
import signal
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

log = logging.getLogger("smtp_server")


class Maildir:
    """Saves messages and keeps the JSON line indexes."""

    def __init__(self, path, reject_first):
        self.path = path
        os.makedirs(path, exist_ok=True)
        self.seq = 0
        self.reject_first = reject_first
        self.data_commands = 0

    async def handle_DATA(self, server, session, envelope):
        received_ms = time.time_ns() // 1_000_000
        self.data_commands += 1
        line = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "tls": server.transport.get_extra_info("ssl_object") is not None,
            "auth_user": session.auth_data if session.authenticated else None,
            "received_ms": received_ms,
        }
        if self.data_commands <= self.reject_first:
            self._append("rejected.jsonl", line)
            log.info("rejected message %d (--reject-first)", self.data_commands)
            return "451 4.3.0 smtp_server: --reject-first, try again later"
        self.seq += 1
        name = f"{self.seq:06d}.eml"
        tmp = os.path.join(self.path, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.original_content)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, os.path.join(self.path, name))
        self._append("index.jsonl", {"seq": self.seq, "file": name, **line})
        log.info("saved %s from %s to %s", name, envelope.mail_from, envelope.rcpt_tos)
        return f"250 2.0.0 Ok: saved as {name}"

    def _append(self, index, line):
        with open(os.path.join(self.path, index), "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def authenticator_for(user, password):
    def authenticate(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode("utf-8", "replace") == user
            and auth_data.password.decode("utf-8", "replace") == password
        )
        log.info("AUTH %s as %r: %s", mechanism, auth_data.login if ok else auth_data, ok)
        # handled=False: aiosmtpd answers 535 itself to a failure
        return AuthResult(success=ok, handled=False, auth_data=user if ok else None)

    return authenticate


def server_tls_context(cert, key):
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


async def serve(args):
    maildir = Maildir(args.maildir, args.reject_first)
    starttls = server_tls_context(*args.starttls) if args.starttls else None
    implicit = server_tls_context(*args.implicit_tls) if args.implicit_tls else None
    auth_kwargs = {}
    if args.auth:
        user, sep, password = args.auth.partition(":")
        if not sep:
            sys.exit("smtp_server: --auth wants USER:PASS")
        auth_kwargs = {
            "auth_required": True,
            "authenticator": authenticator_for(user, password),
            # aiosmtpd only counts STARTTLS as TLS; SMTPS is encrypted from the start.
            "auth_require_tls": not (args.allow_plain_auth or implicit),
        }
    loop = asyncio.get_running_loop()

    def factory():
        return SMTP(
            maildir,
            hostname="rooftop-test-smtp",  # not socket.getfqdn(): no DNS look-up
            enable_SMTPUTF8=True,
            tls_context=starttls,
            require_starttls=args.require_starttls,
            loop=loop,
            **auth_kwargs,
        )

    server = await loop.create_server(factory, host="127.0.0.1", port=args.port, ssl=implicit)
    port = server.sockets[0].getsockname()[1]

    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"READY port={port}", flush=True)
    await stop.wait()
    log.info("stopping")
    server.close()
    try:  # from Python 3.12 on this also waits for open connections
        await asyncio.wait_for(server.wait_closed(), 2)
    except asyncio.TimeoutError:
        pass


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--auth", metavar="USER:PASS")
    parser.add_argument("--allow-plain-auth", action="store_true")
    parser.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--require-starttls", action="store_true")
    parser.add_argument("--implicit-tls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--reject-first", type=int, default=0, metavar="N")
    args = parser.parse_args()
    if args.starttls and args.implicit_tls:
        parser.error("--starttls and --implicit-tls exclude each other")
    if args.require_starttls and not args.starttls:
        parser.error("--require-starttls needs --starttls")
    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s smtp_server %(message)s")
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
