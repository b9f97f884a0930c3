"""A Docker volume plugin that misbehaves on purpose (stdlib only). The volume name picks how
Create answers: ``garbage*`` invalid JSON, ``err*`` an Err field, ``hang*`` never (sleeps),
``vanish*`` the process exits mid-request (the socket goes with it), ``http500*`` a 500;
anything else succeeds.

usage: hostile.py SOCKET"""

from __future__ import annotations

import os
import sys
import time

from _serve import serve

SOCKET = sys.argv[1]


def create(b: dict):
    name = b.get("Name") or ""
    if name.startswith("garbage"):
        return b"{this is not json"
    if name.startswith("err"):
        return {"Err": "the disk is on fire"}
    if name.startswith("hang"):
        time.sleep(3600)
    if name.startswith("vanish"):
        os.unlink(SOCKET)
        os._exit(3)
    if name.startswith("http500"):
        raise RuntimeError("boom")
    return {"Err": ""}


serve(SOCKET, ["VolumeDriver"], {
    "VolumeDriver.Create": create, "VolumeDriver.List": lambda _b: {"Volumes": [], "Err": ""},
    "VolumeDriver.Path": lambda b: {"Mountpoint": "", "Err": ""},
    "VolumeDriver.Remove": lambda b: {"Err": ""},
})
