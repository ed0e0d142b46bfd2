#!/usr/bin/env python3
"""A minimal IMAP4rev1 server for the mailbox probe and IMAP client tests: greeting, CAPABILITY,
STARTTLS (143) or TLS on connect (993), LOGIN for one account (only over TLS), SELECT of an empty
INBOX, NOOP, IDLE, LOGOUT. Logs "LOGIN user ok|fail" and every command verb. Faults on demand:
--close-on VERB drops the connection when VERB arrives; --bye-on VERB answers it with
"* BYE [UNAVAILABLE]" and closes. With --token, AUTHENTICATE XOAUTH2 and OAUTHBEARER (SASL-IR or
after "+") accept that token; another gets the providers' error challenge (a base64 JSON), and
the client's answer to it is logged ("ANSWER <base64>") before the NO. With --oauth-tokens-file
(the OAuth test endpoint's "TOKEN EXPIRES_MS" lines, read at each AUTHENTICATE) any token it
issued that has not expired is accepted too."""
import argparse
import base64
import os
import shlex
import socket
import ssl
import threading
import time


def issued_and_live(path, token):
    """Whether the OAuth test endpoint issued token and it has not expired."""
    if not path or not token:
        return False
    try:
        with open(path) as f:
            listed = f.read()
    except FileNotFoundError:
        return False
    now_ms = int(time.time() * 1000)
    for line in listed.split("\n")[:-1]:  # whole lines only: the endpoint appends while we read
        parts = line.split()
        if len(parts) == 2 and parts[0] == token and parts[1].isdigit() and int(parts[1]) > now_ms:
            return True
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--cert", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--implicit-tls", action="store_true")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--close-on", default="")
    ap.add_argument("--bye-on", default="")
    ap.add_argument("--token", default="")
    ap.add_argument("--oauth-tokens-file", default="")
    args = ap.parse_args()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    log_lock = threading.Lock()

    def log(line):
        with log_lock, open(os.path.join(args.dir, "imap.log"), "a") as f:
            f.write(line + "\n")

    def serve(sock):
        state = {"sock": sock, "tls": False, "buf": b""}
        if args.implicit_tls:
            state["sock"] = ctx.wrap_socket(sock, server_side=True)
            state["tls"] = True

        def send(text):
            state["sock"].sendall(text.encode() + b"\r\n")

        def readline():
            while b"\r\n" not in state["buf"]:
                data = state["sock"].recv(4096)
                if not data:
                    return None
                state["buf"] += data
            line, state["buf"] = state["buf"].split(b"\r\n", 1)
            return line.decode(errors="replace")

        oauth = bool(args.token or args.oauth_tokens_file)
        oauth_caps = " SASL-IR AUTH=XOAUTH2 AUTH=OAUTHBEARER" if oauth else ""
        send("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] test IMAP ready" if not state["tls"]
             else "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN%s] test IMAP ready" % oauth_caps)
        while True:
            line = readline()
            if line is None:
                return
            tag, _, rest = line.partition(" ")
            cmd, _, argstr = rest.partition(" ")
            cmd = cmd.upper()
            log("CMD %s" % cmd)
            if cmd == args.close_on.upper():
                return
            if cmd == args.bye_on.upper():
                send("* BYE [UNAVAILABLE] Temporary problem, try again later")
                return
            if cmd == "STARTTLS" and not state["tls"]:
                send(tag + " OK begin TLS now")
                state["sock"] = ctx.wrap_socket(state["sock"], server_side=True)
                state["tls"] = True
                state["buf"] = b""
            elif cmd == "LOGIN":
                try:
                    user, password = shlex.split(argstr)
                except ValueError:
                    send(tag + " BAD malformed LOGIN")
                    continue
                ok = state["tls"] and user == args.user and password == args.password
                log("LOGIN %s %s" % (user, "ok" if ok else "fail"))
                send(tag + (" OK LOGIN completed" if ok else " NO [AUTHENTICATIONFAILED] invalid credentials"))
            elif cmd == "AUTHENTICATE" and oauth and state["tls"]:
                mech, _, initial = argstr.partition(" ")
                mech = mech.upper()
                if not initial:
                    send("+ ")
                    initial = readline() or ""
                try:
                    fields = base64.b64decode(initial, validate=True).decode(errors="replace").split("\x01")
                except ValueError:
                    send(tag + " BAD bad base64")
                    continue
                if mech == "XOAUTH2":
                    user = fields[0][len("user="):]
                    token = fields[1][len("auth=Bearer "):] if len(fields) > 1 else ""
                else:  # OAUTHBEARER: "n,a=user," then key=value pairs
                    user = fields[0].split("a=", 1)[-1].rstrip(",")
                    token = next((f[len("auth=Bearer "):] for f in fields if f.startswith("auth=Bearer ")), "")
                ok = user == args.user and bool(token) and (
                    token == args.token or issued_and_live(args.oauth_tokens_file, token))
                log("AUTHENTICATE %s %s %s" % (mech, user, "ok" if ok else "fail"))
                if ok:
                    send(tag + " OK authenticated")
                    continue
                send("+ " + base64.b64encode(b'{"status":"401","schemes":"bearer","scope":"https://mail.google.com/"}')
                     .decode())
                log("ANSWER %s" % (readline() or ""))
                send(tag + " NO [AUTHENTICATIONFAILED] Invalid credentials (Failure)")
            elif cmd == "LOGOUT":
                send("* BYE logging out")
                send(tag + " OK LOGOUT completed")
                return
            elif cmd == "CAPABILITY":
                send("* CAPABILITY IMAP4rev1 IDLE" + oauth_caps if state["tls"]
                     else "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED")
                send(tag + " OK CAPABILITY completed")
            elif cmd in ("SELECT", "EXAMINE"):
                send("* 0 EXISTS")
                send("* OK [UIDVALIDITY 42] UIDs valid")
                send(tag + " OK [READ-WRITE] done")
            elif cmd == "NOOP":
                send(tag + " OK NOOP completed")
            elif cmd == "IDLE":
                send("+ idling")
                while True:
                    done = readline()
                    if done is None:
                        return
                    log("CMD %s" % done.strip().upper())
                    if done.strip().upper() == "DONE":
                        break
                send(tag + " OK IDLE terminated")
            else:
                send(tag + " BAD unknown command")

    def run(sock):
        try:
            serve(sock)
        except (OSError, ssl.SSLError) as e:
            log("ERROR %s" % e)
        finally:
            sock.close()

    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((args.host, args.port))
    srv.listen(16)
    with open(os.path.join(args.dir, "ready"), "w") as f:
        f.write("ready\n")
    while True:
        conn, _ = srv.accept()
        conn.settimeout(30)
        threading.Thread(target=run, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
