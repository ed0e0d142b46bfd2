#!/usr/bin/python3
"""An MTA-STS policy server for tests (RFC 8461 3.3) over HTTPS with the test CA.

Usage: mta_sts_server.py --host IP --port N --cert PEM --key PEM --state-dir DIR

What each virtual host answers is steered through files in DIR/sites/<host>/ (the Host header,
without a port, picks the folder), read afresh for every request:
  status        the HTTP status (default 200)
  content_type  the Content-Type header (default "text/plain"; an empty file sends none)
  location      a Location header, for redirects
  body          the body, sent as is
A host without a folder gets 404. Written by the server:
  DIR/stats.json  {"requests": {"<host> <path>": N, ...}}
  DIR/ready       appears once listening
"""
import argparse
import json
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

lock = threading.Lock()
requests = {}


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(data)
    os.replace(tmp, path)


def read(path, default):
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        return default


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *a):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % a))

    def do_GET(self):
        args = self.server.args
        host = (self.headers.get("Host") or "").split(":")[0].lower()
        with lock:
            key = host + " " + self.path
            requests[key] = requests.get(key, 0) + 1
            write_atomic(os.path.join(args.state_dir, "stats.json"), json.dumps({"requests": requests}))
        site = os.path.join(args.state_dir, "sites", os.path.basename(host))
        if not host or not os.path.isdir(site):
            status, ctype, location, body = 404, b"text/plain", b"", b"no such site\n"
        else:
            status = int(read(os.path.join(site, "status"), b"200").strip() or b"200")
            ctype = read(os.path.join(site, "content_type"), b"text/plain").strip()
            location = read(os.path.join(site, "location"), b"").strip()
            body = read(os.path.join(site, "body"), b"")
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype.decode())
        if location:
            self.send_header("Location", location.decode())
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


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
    os.makedirs(os.path.join(args.state_dir, "sites"), exist_ok=True)
    write_atomic(os.path.join(args.state_dir, "stats.json"), json.dumps({"requests": {}}))
    write_atomic(os.path.join(args.state_dir, "ready"), "")
    server.serve_forever()


if __name__ == "__main__":
    main()
