#!/usr/bin/python3
"""A scripted SMTP server for tests: replies and faults come from a JSON script.

Usage: scripted_smtp_server.py [--host IP] --port N --dump-dir DIR (--script JSON | --script-file PATH)

Script:
  {"steps": {VERB: STEP or [STEP, ...]}, "close_after_each_command": false}
VERB is BANNER, EHLO, HELO, MAIL, RCPT, DATA, BODY (the first bytes of the message, before the
final "."), DOT (the end of the message), QUIT, RSET, NOOP, or "*" for anything else.
STEP is a reply string ("550 5.1.1 no such user"; "\\n" separates lines) or an object:
  reply        string or list of lines (CRLF added)
  action       "reply" (default) | "close" | "abort" | "silent" | "garbage" | "huge_line" | "endless" | "none"
  times        use this step for this many matching commands (counted across connections),
               then move on to the next step; the last step repeats forever
  delay_ms     wait before acting
  split        send the reply one byte per packet
  bytes        payload for "garbage" (latin-1 string)
  encoding     how a reply's text becomes bytes (default "utf-8"; "latin-1" sends é as the byte E9)
  size         line length for "huge_line" (default 1 MiB)
  close_after  close the connection after replying
"close_after_each_command" closes after every reply to a command (not after the banner).
TLS: "tls": {"cert": PEM, "key": PEM} enables STARTTLS (advertised in the default EHLO reply
before TLS; a STARTTLS reply starting with 220 is followed by the handshake) and, with
"implicit_tls": true, TLS from the first byte. STARTTLS steps may use action "stall_tls" (reply
220, then never handshake) or "garbage_tls" (reply 220, then send non-TLS bytes); "tls_stall": true
with implicit TLS accepts connections and never answers the handshake.
Every command line is appended to DIR/commands.log (with "CONNECT" per connection); every
complete message is written to DIR/msg-N.eml when the reply to "." was 2xx, else DIR/rejected-N.eml.
DIR/ready appears once the port is listening.
"""
import argparse
import asyncio
import json
import os
import socket
import ssl
import sys

DEFAULTS = {
    "BANNER": "220 scripted.test ESMTP ready",
    "EHLO": ["250-scripted.test", "250-PIPELINING", "250-SIZE 10485760", "250-8BITMIME",
             "250 ENHANCEDSTATUSCODES"],
    "HELO": "250 scripted.test",
    "MAIL": "250 2.1.0 ok",
    "RCPT": "250 2.1.5 ok",
    "DATA": "354 end data with <CR><LF>.<CR><LF>",
    "BODY": {"action": "none"},
    "DOT": "250 2.0.0 queued",
    "QUIT": "221 2.0.0 bye",
    "RSET": "250 2.0.0 ok",
    "STARTTLS": "220 2.0.0 ready to start TLS",
    "NOOP": "250 2.0.0 ok",
    "*": "502 5.5.2 command not recognized",
}
MAX_LINE = 16 * 1024 * 1024
ENDLESS_CAP = 256 * 1024 * 1024


def reply_text(step):
    """The first reply line a step would send ("" for faults)."""
    if isinstance(step, dict):
        if step.get("action", "reply") != "reply":
            return ""
        step = step.get("reply", "250 ok")
    if isinstance(step, list):
        step = step[0] if step else ""
    return step


class Closed(Exception):
    pass


class Server:
    def __init__(self, script, dump_dir):
        self.steps = {}
        for verb, default in DEFAULTS.items():
            given = script.get("steps", {}).get(verb, default)
            self.steps[verb] = given if isinstance(given, list) and given and not isinstance(given[0], str) \
                else [given]
        self.close_after_each = bool(script.get("close_after_each_command", False))
        self.ehlo_given = "EHLO" in script.get("steps", {})
        self.tls_ctx = None
        tls = script.get("tls")
        if tls:
            self.tls_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self.tls_ctx.load_cert_chain(tls["cert"], tls["key"])
        self.implicit_tls = bool(script.get("implicit_tls", False))
        self.tls_stall = bool(script.get("tls_stall", False))
        self.counts = {}
        self.dump_dir = dump_dir
        self.messages = 0
        self.log = open(os.path.join(dump_dir, "commands.log"), "a", buffering=1, encoding="utf-8",
                        errors="backslashreplace")

    def step_for(self, verb):
        if verb not in self.steps:
            verb = "*"
        n = self.counts.get(verb, 0)
        self.counts[verb] = n + 1
        steps = self.steps[verb]
        for step in steps:
            times = step.get("times") if isinstance(step, dict) else None
            if times is None:
                return step
            if n < times:
                return step
            n -= times
        return steps[-1]

    async def act(self, step, writer, banner=False):
        """Carries out one step; raises Closed when the connection is to end."""
        if isinstance(step, (str, list)):
            step = {"reply": step}
        if step.get("delay_ms"):
            await asyncio.sleep(step["delay_ms"] / 1000.0)
        action = step.get("action", "reply")
        if action == "none":
            return
        if action == "silent":
            return
        if action == "close":
            raise Closed()
        if action == "abort":  # drop the TCP connection at once (under TLS: no close_notify)
            writer.transport.abort()
            raise Closed()
        if action == "garbage":
            data = step.get("bytes", "\x00\xff\xfe garbage\r\n").encode("latin-1")
        elif action == "huge_line":
            data = b"250 " + b"x" * int(step.get("size", 1024 * 1024)) + b"\r\n"
        elif action == "endless":
            chunk = b"250-this reply never ends\r\n" * 256
            sent = 0
            while sent < ENDLESS_CAP:
                writer.write(chunk)
                await writer.drain()
                sent += len(chunk)
            raise Closed()
        else:
            reply = step.get("reply", "250 ok")
            lines = reply if isinstance(reply, list) else reply.split("\n")
            data = "".join(line.rstrip("\r") + "\r\n" for line in lines).encode(step.get("encoding", "utf-8"))
        if step.get("split"):
            for i in range(len(data)):
                writer.write(data[i:i + 1])
                await writer.drain()
                await asyncio.sleep(0.002)
        else:
            writer.write(data)
            await writer.drain()
        if step.get("close_after") or (self.close_after_each and not banner):
            raise Closed()

    async def handle(self, reader, writer):
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.log.write("CONNECT\n")
        tls_on = self.implicit_tls
        try:
            if self.tls_stall:
                await asyncio.sleep(3600)
                return
            await self.act(self.step_for("BANNER"), writer, banner=True)
            while True:
                line = await reader.readline()
                if not line:
                    return
                text = line.decode("utf-8", "backslashreplace").rstrip("\r\n")
                self.log.write(text + "\n")
                verb = text.split(" ", 1)[0].split(":", 1)[0].upper()
                step = self.step_for(verb)
                if verb == "EHLO" and self.tls_ctx and not self.ehlo_given and not tls_on:
                    step = DEFAULTS["EHLO"][:-1] + ["250-STARTTLS", DEFAULTS["EHLO"][-1]]
                if verb == "STARTTLS" and isinstance(step, dict) and step.get("action") in ("stall_tls", "garbage_tls"):
                    writer.write(b"220 2.0.0 go ahead\r\n")
                    await writer.drain()
                    if step["action"] == "stall_tls":
                        await asyncio.sleep(3600)
                    await asyncio.sleep(0.2)  # so the client is in its handshake, not still reading the 220
                    writer.write(b"this is not a TLS record\r\n" * 4)
                    await writer.drain()
                    await asyncio.sleep(1)
                    raise Closed()
                await self.act(step, writer)
                if verb == "STARTTLS" and reply_text(step).startswith("220") and self.tls_ctx and not tls_on:
                    await writer.start_tls(self.tls_ctx)
                    tls_on = True
                    continue
                if verb == "DATA" and reply_text(step).startswith("354"):
                    await self.read_message(reader, writer)
                elif verb == "QUIT":
                    return
        except (Closed, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ssl.SSLError):
            pass
        except Exception as e:  # a script mistake: say so in the log, drop only this connection
            print("scripted_smtp_server: %r" % e, file=sys.stderr, flush=True)
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def read_message(self, reader, writer):
        lines = []
        first = True
        while True:
            line = await reader.readline()
            if not line:
                raise Closed()
            if first:
                first = False
                await self.act(self.step_for("BODY"), writer)
            if line in (b".\r\n", b".\n"):
                break
            if line.startswith(b"."):
                line = line[1:]  # RFC 5321 4.5.2: undo dot-stuffing
            lines.append(line)
        self.log.write(".\n")
        step = self.step_for("DOT")
        reply = reply_text(step)
        self.messages += 1
        name = ("msg-%d.eml" if reply.startswith("2") else "rejected-%d.eml") % self.messages
        with open(os.path.join(self.dump_dir, name), "wb") as f:
            f.write(b"".join(lines))
        await self.act(step, writer)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--dump-dir", required=True)
    ap.add_argument("--script")
    ap.add_argument("--script-file")
    args = ap.parse_args()
    if args.script_file:
        with open(args.script_file, encoding="utf-8") as f:
            script = json.load(f)
    else:
        script = json.loads(args.script or "{}")
    os.makedirs(args.dump_dir, exist_ok=True)
    server = Server(script, args.dump_dir)
    # Loopback only: this server exists for tests.
    implicit = server.tls_ctx if server.implicit_tls and not server.tls_stall else None
    srv = await asyncio.start_server(server.handle, args.host, args.port, limit=MAX_LINE, backlog=512, ssl=implicit)
    with open(os.path.join(args.dump_dir, "ready.tmp"), "w") as f:
        f.write(str(args.port))
    os.rename(os.path.join(args.dump_dir, "ready.tmp"), os.path.join(args.dump_dir, "ready"))
    print("scripted_smtp_server listening on %s:%d" % (args.host, args.port), file=sys.stderr, flush=True)
    async with srv:
        await srv.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
