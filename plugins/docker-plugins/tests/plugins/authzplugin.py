"""A Docker authorization plugin (stdlib only): denies any request whose URI contains DENY
(and any response to a URI containing DENY_RESPONSE), allows the rest; every request it sees is
written to LOG (method, URI, whether a body came).

usage: authzplugin.py SOCKET LOG DENY DENY_RESPONSE"""

from __future__ import annotations

import base64
import json
import sys

from _serve import serve

SOCKET, LOG, DENY, DENY_RESPONSE = sys.argv[1:5]
log = open(LOG, "a")


def req(b: dict) -> dict:
    body = base64.b64decode(b["RequestBody"]).decode() if b.get("RequestBody") else ""
    log.write(json.dumps({"phase": "req", "method": b["RequestMethod"], "uri": b["RequestUri"],
                          "body": body, "user": b.get("User"), "authn": b.get("UserAuthNMethod")}) + "\n")
    log.flush()
    if DENY in b["RequestUri"]:
        return {"Allow": False, "Msg": f"no {DENY} for you"}
    return {"Allow": True}


def res(b: dict) -> dict:
    log.write(json.dumps({"phase": "res", "uri": b["RequestUri"], "status": b.get("ResponseStatusCode")}) + "\n")
    log.flush()
    if DENY_RESPONSE in b["RequestUri"]:
        return {"Allow": False, "Msg": "the answer is secret"}
    return {"Allow": True}


serve(SOCKET, ["authz"], {"AuthZPlugin.AuthZReq": req, "AuthZPlugin.AuthZRes": res})
