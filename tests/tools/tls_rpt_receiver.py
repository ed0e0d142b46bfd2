#!/usr/bin/python3
"""A TLS-RPT report receiver for tests (RFC 8460 5.3.1): HTTPS with the test CA, takes POSTs.

Usage: tls_rpt_receiver.py --host IP --port N --cert PEM --key PEM --state-dir DIR

Every POST is kept as DIR/posts/<n>.body (the body as received) and DIR/posts/<n>.meta (JSON:
path, host, content_type), n counting from 1, and answered with the status in DIR/status
(default 200), read afresh for every request. DIR/ready appears once listening.
"""
import argparse
import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
count = 0


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % a))

    def do_POST(self):
        global count
        args = self.server.args
        length = int(self.headers.get("Content-Length") or "0")
        body = self.rfile.read(length) if length > 0 else b""
        meta = {
            "path": self.path,
            "host": self.headers.get("Host") or "",
            "content_type": self.headers.get("Content-Type") or "",
        }
        with lock:
            count += 1
            n = count
            posts = os.path.join(args.state_dir, "posts")
            # The body first: a test that sees the meta file can read the body.
            write_atomic(os.path.join(posts, "%d.body" % n), body)
            write_atomic(os.path.join(posts, "%d.meta" % n), json.dumps(meta).encode())
        try:
            with open(os.path.join(args.state_dir, "status")) as f:
                status = int(f.read().strip() or "200")
        except FileNotFoundError:
            status = 200
        answer = b"thanks\n"
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=443)
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--state-dir", required=True)
    args = p.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(args.cert, args.key)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    server.args = args
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    os.makedirs(os.path.join(args.state_dir, "posts"), exist_ok=True)
    write_atomic(os.path.join(args.state_dir, "ready"), b"")
    server.serve_forever()


if __name__ == "__main__":
    main()
