#!/usr/bin/python3
"""An OAuth 2.0 token endpoint for tests (RFC 6749 refresh_token grant) over HTTPS with the test CA.

Usage: oauth_token_endpoint.py --host IP --port N --cert PEM --key PEM --state-dir DIR
       --client-id ID [--client-secret S] --refresh-token R [--lifetime SECONDS] [--rotate]

Issues access tokens that live --lifetime seconds (5 in tests). With --rotate every grant also
issues a new refresh token; the one it replaces stays valid until its successor is first used
(so a daemon killed before it saved the new one can still refresh with the old one), then it is
refused with invalid_grant.

The test steers it through files in DIR:
  mode        ok (default) | invalid_grant | 503 | silent (read the request, never answer) |
              hold (grant, then wait for DIR/release before answering; DIR/held appears while held)
  stats.json  {"grants": N, "refused": N, "unavailable": N, "requests": N, "latencies_ms": [...]}
  tokens      one line per issued access token: "TOKEN EXPIRES_UNIX_MS" (read by the SMTP server)
  refresh.log one line per grant: "OLD_REFRESH -> NEW_REFRESH" (or "-> same")
  ready       appears once listening
"""
import argparse
import json
import os
import secrets
import ssl
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
state = {"grants": 0, "refused": 0, "unavailable": 0, "requests": 0}
# refresh token -> {"valid": bool, "successor": str or None, "predecessor": str or None}
refresh_tokens = {}


def write_atomic(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def mode(args):
    try:
        with open(os.path.join(args.state_dir, "mode")) as f:
            return f.read().strip() or "ok"
    except FileNotFoundError:
        return "ok"


def save_stats(args):
    write_atomic(os.path.join(args.state_dir, "stats.json"), json.dumps(state))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % a))

    def answer(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        args = self.server.args
        length = int(self.headers.get("Content-Length", "0"))
        form = urllib.parse.parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
        one = lambda k: (form.get(k) or [""])[0]
        m = mode(args)
        with lock:
            state["requests"] += 1
            save_stats(args)
        if self.path != "/token":
            return self.answer(404, {"error": "not_found"})
        if m == "silent":
            time.sleep(3600)
            return
        if m == "503":
            with lock:
                state["unavailable"] += 1
                save_stats(args)
            return self.answer(503, {"error": "temporarily_unavailable"})
        if one("grant_type") != "refresh_token":
            return self.answer(400, {"error": "unsupported_grant_type"})
        if one("client_id") != args.client_id or (args.client_secret and one("client_secret") != args.client_secret):
            return self.answer(401, {"error": "invalid_client"})
        presented = one("refresh_token")
        with lock:
            rt = refresh_tokens.get(presented)
            if m == "invalid_grant" or rt is None or not rt["valid"]:
                state["refused"] += 1
                save_stats(args)
                refused = True
            else:
                refused = False
                # The first use of a successor retires the token it replaced.
                pred = rt.get("predecessor")
                if pred and pred in refresh_tokens:
                    refresh_tokens[pred]["valid"] = False
                access = "at-" + secrets.token_urlsafe(18)
                expires_ms = int(time.time() * 1000) + args.lifetime * 1000
                reply = {"access_token": access, "token_type": "Bearer", "expires_in": args.lifetime,
                         "scope": "https://mail.google.com/"}
                if args.rotate:
                    new = "rt-" + secrets.token_urlsafe(18)
                    refresh_tokens[new] = {"valid": True, "successor": None, "predecessor": presented}
                    rt["successor"] = new
                    reply["refresh_token"] = new
                state["grants"] += 1
                with open(os.path.join(args.state_dir, "tokens"), "a") as f:
                    f.write("%s %d\n" % (access, expires_ms))
                with open(os.path.join(args.state_dir, "refresh.log"), "a") as f:
                    f.write("%s -> %s\n" % (presented, reply.get("refresh_token", "same")))
                save_stats(args)
        if refused:
            return self.answer(400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
        if m == "hold":
            held = os.path.join(args.state_dir, "held")
            write_atomic(held, json.dumps(reply))
            release = os.path.join(args.state_dir, "release")
            deadline = time.time() + 120
            while not os.path.exists(release) and time.time() < deadline:
                time.sleep(0.05)
        self.answer(200, reply)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--state-dir", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--client-secret", default="")
    p.add_argument("--refresh-token", required=True)
    p.add_argument("--lifetime", type=int, default=5)
    p.add_argument("--rotate", action="store_true")
    args = p.parse_args()
    refresh_tokens[args.refresh_token] = {"valid": True, "successor": None, "predecessor": None}
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.args = args
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    save_stats(args)
    write_atomic(os.path.join(args.state_dir, "ready"), "")
    server.serve_forever()


if __name__ == "__main__":
    main()
