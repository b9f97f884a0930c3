"""Names of what the netns driver makes on the machine. Every one carries the owner's tag
followed by ``m`` (machine), so reconciliation and a leak check find exactly this driver's
objects, and they never match the bridge network driver's ``<tag>-`` bridges and ``<tag>v``
veths of the same daemon (that driver deletes unexplained links with those prefixes).

``<tag>mbr`` the host-side bridge; ``<tag>m<6 of host id>`` the machine end of a host's veth
pair (the host end is ``eth0`` inside the host); ``<tag>m-<host name>`` the host's network
namespace (``/run/netns``) and its cgroup. Linux link names are at most 15 characters.
"""

from __future__ import annotations

import hashlib
import re

IFNAMSIZ = 15
KEY_LEN = 6
#: Docker Machine's rule for machine names, with a length that keeps the names above short.
HOST_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9.-]{0,39}$")
_SIMPLE = re.compile(r"^[A-Za-z0-9]{1,8}$")


def tag(owner: str) -> str:
    """The owner itself when it fits in 8 characters (a daemon's ``dy`` + 6 hex does), else a
    2-character prefix plus 6 hex of its hash."""
    if _SIMPLE.match(owner):
        return owner
    return (owner[:2] if _SIMPLE.match(owner[:2]) else "dy") + hashlib.sha256(owner.encode()).hexdigest()[:6]


def prefix(owner: str) -> str:
    """What every name of this driver starts with."""
    return tag(owner) + "m"


def bridge(owner: str) -> str:
    return prefix(owner) + "br"


def veth(owner: str, key: str) -> str:
    return prefix(owner) + key[:KEY_LEN]


def netns(owner: str, host_name: str) -> str:
    return f"{prefix(owner)}-{host_name}"


def cgroup(owner: str, host_name: str) -> str:
    return f"{prefix(owner)}-{host_name}"


def is_veth(owner: str, name: str) -> bool:
    return name.startswith(prefix(owner)) and name != bridge(owner) and len(name) == len(prefix(owner)) + KEY_LEN


def is_host_object(owner: str, name: str) -> bool:
    """A netns or cgroup name of this driver's hosts."""
    return name.startswith(prefix(owner) + "-")
