"""A Docker volume plugin (stdlib only): volumes are directories under ROOT, mounts counted per
caller ID in ROOT/state.json (so they outlive the daemon's driver instances).

usage: volplugin.py SOCKET ROOT"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys

from _serve import serve

SOCKET, ROOT = sys.argv[1], sys.argv[2]
STATE = os.path.join(ROOT, "state.json")
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
OPTIONS = {"size", "label"}


def load() -> dict:
    try:
        with open(STATE) as f:
            return json.load(f)
    except OSError:
        return {}


def save(state: dict) -> None:
    with open(STATE + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(STATE + ".tmp", STATE)


def path(name: str) -> str:
    return os.path.join(ROOT, "volumes", name)


def get(state: dict, name: str) -> dict:
    if name not in state:
        raise LookupError(f"no such volume: {name}")
    return state[name]


def create(b: dict) -> dict:
    name, opts = b.get("Name") or "", b.get("Opts") or {}
    if not NAME.fullmatch(name):
        return {"Err": f"invalid volume name {name!r}"}
    bad = sorted(set(opts) - OPTIONS)
    if bad:
        return {"Err": f"invalid option: unknown option {bad[0]}"}
    state = load()
    state.setdefault(name, {"opts": opts, "mounts": []})
    os.makedirs(path(name), exist_ok=True)
    save(state)
    return {"Err": ""}


def remove(b: dict) -> dict:
    state = load()
    vol = get(state, b["Name"])
    if vol["mounts"]:
        return {"Err": f"volume {b['Name']} is in use by {sorted(set(vol['mounts']))}"}
    shutil.rmtree(path(b["Name"]), ignore_errors=True)
    del state[b["Name"]]
    save(state)
    return {"Err": ""}


def mount(b: dict) -> dict:
    state = load()
    get(state, b["Name"])["mounts"].append(b["ID"])
    save(state)
    return {"Mountpoint": path(b["Name"]), "Err": ""}


def unmount(b: dict) -> dict:
    state = load()
    vol = get(state, b["Name"])
    if b["ID"] in vol["mounts"]:
        vol["mounts"].remove(b["ID"])
    save(state)
    return {"Err": ""}


def vpath(b: dict) -> dict:
    get(load(), b["Name"])
    return {"Mountpoint": path(b["Name"]), "Err": ""}


def vget(b: dict) -> dict:
    get(load(), b["Name"])
    return {"Volume": {"Name": b["Name"], "Mountpoint": path(b["Name"]), "Status": {}}, "Err": ""}


def vlist(_b: dict) -> dict:
    return {"Volumes": [{"Name": n, "Mountpoint": path(n)} for n in sorted(load())], "Err": ""}


def errs(fn):  # a missing volume is an Err, as real plugins answer
    def call(b: dict) -> dict:
        try:
            return fn(b)
        except LookupError as exc:
            return {"Err": str(exc).strip("'\"")}
    return call


os.makedirs(os.path.join(ROOT, "volumes"), exist_ok=True)
serve(SOCKET, ["VolumeDriver"], {f"VolumeDriver.{k}": errs(v) for k, v in {
    "Create": create, "Remove": remove, "Mount": mount, "Unmount": unmount, "Path": vpath, "Get": vget,
    "List": vlist, "Capabilities": lambda _b: {"Capabilities": {"Scope": "local"}}}.items()},
    log=open(os.path.join(ROOT, "calls.log"), "a"))
