#!/usr/bin/env python3
"""A minimal IMAP4rev1 server for the mailbox probe and IMAP client tests: greeting, CAPABILITY,
STARTTLS (143) or TLS on connect (993), LOGIN for one account (only over TLS), SELECT of an empty
INBOX, NOOP, IDLE, LOGOUT. Logs "LOGIN user ok|fail" and every command verb. Faults on demand:
--close-on VERB drops the connection when VERB arrives; --bye-on VERB answers it with
"* BYE [UNAVAILABLE]" and closes."""
import argparse
import os
import shlex
import socket
import ssl
import threading


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

        send("* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] test IMAP ready" if not state["tls"]
             else "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] test IMAP ready")
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
            elif cmd == "LOGOUT":
                send("* BYE logging out")
                send(tag + " OK LOGOUT completed")
                return
            elif cmd == "CAPABILITY":
                send("* CAPABILITY IMAP4rev1 IDLE" if state["tls"] else "* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED")
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
