#!/usr/bin/python3
"""A submission server for tests, built on aiosmtpd: STARTTLS (587 style) or TLS on connect
(465 style), AUTH PLAIN / LOGIN / XOAUTH2 / OAUTHBEARER (RFC 7628) against one test account.

Usage: aiosmtpd_server.py --port N --dump-dir DIR [--host IP] [--cert PEM --key PEM]
       [--implicit-tls] [--user U --password P] [--oauth-token T] [--oauth-tokens-file PATH]
       [--mechanisms PLAIN,LOGIN,XOAUTH2[,OAUTHBEARER]] [--auth-required] [--smtputf8]
       [--size-limit BYTES]
XOAUTH2 and OAUTHBEARER accept, for --user only, the static --oauth-token and any token listed in
--oauth-tokens-file ("TOKEN EXPIRES_UNIX_MS" lines, as tests/tools/oauth_token_endpoint.py appends
them; re-read on every attempt) whose expiry is still ahead. OAUTHBEARER is offered only when
--mechanisms names it. A refused token gets the provider's error challenge (334 + base64 JSON),
answered by the client with an empty line (XOAUTH2) or ^A (OAUTHBEARER), then 535 5.7.8.
Accepted messages go to DIR/msg-N.eml; DIR/envelopes.log gets "from to" per message and
DIR/auth.log "MECH user ok|fail" per attempt, "MECH user expired" for a listed token past its
expiry (never the secret). DIR/ready appears once listening.
"""
import argparse
import asyncio
import base64
import os
import ssl
import sys
import time

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword

MECHANISMS = ("PLAIN", "LOGIN", "XOAUTH2", "OAUTHBEARER")
OAUTH_SCOPE = "https://mail.google.com/"
OAUTH_REFUSED = "535 5.7.8 Username and Password not accepted"


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

    def check_bearer(self, user, token):
        """ok | expired | fail for a bearer token presented for user."""
        if user != self.args.user or not token:
            return "fail"
        if self.args.oauth_token and token == self.args.oauth_token:
            return "ok"
        if not self.args.oauth_tokens_file:
            return "fail"
        try:
            with open(self.args.oauth_tokens_file) as f:
                listed = f.read()
        except FileNotFoundError:
            return "fail"
        now_ms = int(time.time() * 1000)
        verdict = "fail"
        # Only whole lines: the endpoint appends while we read.
        for line in listed.split("\n")[:-1]:
            parts = line.split()
            if len(parts) != 2 or parts[0] != token or not parts[1].isdigit():
                continue
            if int(parts[1]) > now_ms:
                return "ok"
            verdict = "expired"
        return verdict

    async def initial_response(self, server, args):
        """The client's initial response, decoded; an empty challenge first when it sent none."""
        if len(args) < 2:
            blob = await server.challenge_auth("")
            return None if blob is MISSING else blob
        if args[1] == "=":
            return b""
        try:
            return base64.b64decode(args[1], validate=True)
        except Exception:
            await server.push("501 5.5.2 Can't decode base64")
            return None

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
        verdict = self.check_bearer(user, token)
        self.authlog.write("XOAUTH2 %s %s\n" % (user, verdict))
        if verdict == "ok":
            return AuthResult(success=True, handled=False, auth_data=user)
        # Google's behaviour: a 334 challenge with a JSON error, then 535 after the client's empty line.
        answer = await server.challenge_auth('{"status":"401","schemes":"bearer","scope":"%s"}' % OAUTH_SCOPE)
        if answer is not MISSING:  # MISSING: aborted or undecodable, already answered with 501
            await server.push(OAUTH_REFUSED)
        return AuthResult(success=False, handled=True)

    async def auth_OAUTHBEARER(self, server, args):
        # RFC 7628: gs2-header "n,a=USER," then "\1host=H\1port=P\1auth=Bearer T\1\1".
        blob = await self.initial_response(server, args)
        if blob is None:
            return AuthResult(success=False, handled=True)
        try:
            gs2, _, rest = blob.decode().partition("\x01")
            flag, authzid, tail = gs2.split(",")
            if flag not in ("n", "y") or tail or not rest.endswith("\x01\x01"):
                raise ValueError("bad gs2 header")
            user = authzid[len("a="):].replace("=2C", ",").replace("=3D", "=") if authzid.startswith("a=") else ""
            pairs = dict(kv.split("=", 1) for kv in rest[:-2].split("\x01"))
            scheme, _, token = pairs["auth"].partition(" ")
            if scheme.lower() != "bearer":
                raise ValueError("not a bearer token")
        except Exception:
            await server.push("501 5.5.2 Can't decode OAUTHBEARER message")
            return AuthResult(success=False, handled=True)
        verdict = self.check_bearer(user, token.strip())
        self.authlog.write("OAUTHBEARER %s %s\n" % (user, verdict))
        if verdict == "ok":
            return AuthResult(success=True, handled=False, auth_data=user)
        # RFC 7628 3.2.2: an error challenge; the client ends the exchange with a single ^A.
        answer = await server.challenge_auth(
            '{"status":"invalid_token","scope":"%s","schemes":"bearer"}' % OAUTH_SCOPE)
        if answer is MISSING:  # aborted or undecodable, already answered with 501
            return AuthResult(success=False, handled=True)
        if answer != b"\x01":
            await server.push("501 5.5.2 Expected ^A after the error challenge")
            return AuthResult(success=False, handled=True)
        await server.push(OAUTH_REFUSED)
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
    ap.add_argument("--oauth-tokens-file", default="")
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
    exclude = [m for m in MECHANISMS if m not in wanted]
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
