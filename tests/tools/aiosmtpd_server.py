#!/usr/bin/python3
"""A submission server for tests, built on aiosmtpd: STARTTLS (587 style) or TLS on connect
(465 style), AUTH PLAIN / LOGIN / XOAUTH2 against one test account.

Usage: aiosmtpd_server.py --port N --dump-dir DIR [--host IP] [--cert PEM --key PEM]
       [--implicit-tls] [--user U --password P] [--oauth-token T] [--mechanisms PLAIN,LOGIN,XOAUTH2]
       [--auth-required] [--smtputf8] [--size-limit BYTES]
Accepted messages go to DIR/msg-N.eml; DIR/envelopes.log gets "from to" per message and
DIR/auth.log "MECH user ok|fail" per attempt (never the secret). DIR/ready appears once listening.
"""
import argparse
import asyncio
import base64
import os
import ssl
import sys

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Handler:
    def __init__(self, args):
        self.args = args
        self.count = 0
        self.authlog = open(os.path.join(args.dump_dir, "auth.log"), "a", buffering=1)
        self.env_log = open(os.path.join(args.dump_dir, "envelopes.log"), "a", buffering=1)

    async def handle_DATA(self, server, session, envelope):
        self.count += 1
        with open(os.path.join(self.args.dump_dir, "msg-%06d.eml" % self.count), "wb") as f:
            f.write(envelope.original_content or envelope.content)
        self.env_log.write("%s %s tls=%s\n" % (envelope.mail_from, ",".join(envelope.rcpt_tos),
                                               "yes" if session.ssl else "no"))
        return "250 2.0.0 Ok: queued as %d" % self.count

    async def auth_XOAUTH2(self, server, args):
        # RFC-less but documented by Google/Microsoft: base64("user=U\1auth=Bearer T\1\1").
        if len(args) < 2:
            return AuthResult(success=False, handled=False)
        try:
            fields = base64.b64decode(args[1], validate=True).decode().split("\x01")
            user = fields[0][len("user="):]
            token = fields[1][len("auth=Bearer "):]
        except Exception:
            await server.push("501 5.5.2 Can't decode XOAUTH2 string")
            return AuthResult(success=False, handled=True)
        ok = user == self.args.user and self.args.oauth_token and token == self.args.oauth_token
        self.authlog.write("XOAUTH2 %s %s\n" % (user, "ok" if ok else "fail"))
        if ok:
            return AuthResult(success=True, handled=False, auth_data=user)
        # Google's behaviour: a 334 challenge with a JSON error, then 535 after the client's empty line.
        await server.challenge_auth('{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}')
        await server.push("535 5.7.8 Username and Password not accepted")
        return AuthResult(success=False, handled=True)

    def authenticator(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login.decode() == self.args.user
              and auth_data.password.decode() == self.args.password)
        self.authlog.write("%s %s %s\n" % (mechanism, auth_data.login.decode(errors="replace")
                                            if isinstance(auth_data, LoginPassword) else "?", "ok" if ok else "fail"))
        return AuthResult(success=ok, handled=False)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--dump-dir", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--implicit-tls", action="store_true")
    ap.add_argument("--user", default="")
    ap.add_argument("--password", default="")
    ap.add_argument("--oauth-token", default="")
    ap.add_argument("--mechanisms", default="PLAIN,LOGIN,XOAUTH2")
    ap.add_argument("--auth-required", action="store_true")
    ap.add_argument("--smtputf8", action="store_true")
    ap.add_argument("--size-limit", type=int, default=33554432)
    args = ap.parse_args()
    os.makedirs(args.dump_dir, exist_ok=True)
    handler = Handler(args)
    ctx = None
    if args.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(args.cert, args.key)
    wanted = set(m.strip().upper() for m in args.mechanisms.split(",") if m.strip())
    exclude = [m for m in ("PLAIN", "LOGIN", "XOAUTH2") if m not in wanted]
    loop = asyncio.get_running_loop()

    def factory():
        return SMTP(handler, hostname="aiosmtpd.test", tls_context=None if args.implicit_tls else ctx,
                    require_starttls=bool(ctx) and not args.implicit_tls, auth_required=args.auth_required,
                    auth_require_tls=bool(ctx) and not args.implicit_tls, authenticator=handler.authenticator,
                    auth_exclude_mechanism=exclude, enable_SMTPUTF8=args.smtputf8,
                    data_size_limit=args.size_limit, loop=loop)

    # Loopback only: this server exists for tests.
    server = await loop.create_server(factory, host=args.host, port=args.port,
                                      ssl=ctx if args.implicit_tls else None, backlog=1024)
    with open(os.path.join(args.dump_dir, "ready.tmp"), "w") as f:
        f.write(str(args.port))
    os.rename(os.path.join(args.dump_dir, "ready.tmp"), os.path.join(args.dump_dir, "ready"))
    print("aiosmtpd_server listening on %s:%d" % (args.host, args.port), file=sys.stderr, flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
