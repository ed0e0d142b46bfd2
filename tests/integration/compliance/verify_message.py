#!/usr/bin/python3
# Independent checks of a message deliverd composed: DKIM verification with python3-dkim (the DNS
# answer is the test's public key) and a parse with the standard library's email package
# (policy=default), reporting every defect. Prints one JSON object.
# usage: verify_message.py MESSAGE_FILE rsa|ed25519 PUBLIC_KEY_DER DOMAIN SELECTOR
import base64
import json
import sys
from email import policy
from email.parser import BytesParser

import dkim

msg_file, kind, der_file, domain, selector = sys.argv[1:6]
msg = open(msg_file, "rb").read()
der = open(der_file, "rb").read()
if kind == "ed25519":
    record = b"v=DKIM1; k=ed25519; p=" + base64.b64encode(der[-32:])  # raw key: last 32 bytes of the SPKI
else:
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(der)
wanted = ("%s._domainkey.%s." % (selector, domain)).encode()
asked = []


def dnsfunc(name, timeout=5):
    asked.append(name.decode())
    return record if name == wanted else b""


out = {"dkim": bool(dkim.verify(msg, dnsfunc=dnsfunc)), "asked": asked, "defects": []}
m = BytesParser(policy=policy.default).parsebytes(msg)
for part in m.walk():
    for d in part.defects:
        out["defects"].append("%s: %s" % (part.get_content_type(), type(d).__name__))
    for name, value in part.items():
        for d in getattr(value, "defects", ()):
            out["defects"].append("%s: %s" % (name, type(d).__name__))
out["subject"] = str(m["subject"])
out["from"] = str(m["from"])
out["to"] = str(m["to"])
out["list_unsubscribe"] = str(m["list-unsubscribe"] or "")
body = m.get_body(("plain",))
out["text"] = body.get_content() if body is not None else ""
body = m.get_body(("html",))
out["html"] = body.get_content() if body is not None else ""
print(json.dumps(out))
