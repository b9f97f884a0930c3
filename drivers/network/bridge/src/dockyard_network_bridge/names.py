"""Names of the kernel objects this driver creates. Every name starts with the owner's tag, so
reconciliation (and a test) finds exactly this daemon's objects, and two daemons never collide.

``<tag>-<6 of network id>`` bridge, ``<tag>v<6 of endpoint id>`` host end of a veth,
``dockyard-<owner>`` nft tables. Linux names are at most 15 characters.
"""

from __future__ import annotations

import hashlib
import re

IFNAMSIZ = 15
_VALID_IFNAME = re.compile(r"^[A-Za-z0-9_.:@-]{1,15}$")


def tag(owner: str) -> str:
    """The owner itself when it fits in 8 characters (the daemon's ``dy`` + 6 hex does), else a
    2-character prefix plus 6 hex of its hash."""
    if 0 < len(owner) <= 8 and _VALID_IFNAME.match(owner):
        return owner
    return (owner[:2] or "dy") + hashlib.sha256(owner.encode()).hexdigest()[:6]


def bridge_name(owner: str, network_id: str) -> str:
    return f"{tag(owner)}-{network_id[:IFNAMSIZ - len(tag(owner)) - 1]}"


def veth_name(owner: str, endpoint_id: str) -> str:
    return f"{tag(owner)}v{endpoint_id[:IFNAMSIZ - len(tag(owner)) - 1]}"


def is_bridge_name(owner: str, name: str) -> bool:
    return name.startswith(tag(owner) + "-")


def is_veth_name(owner: str, name: str) -> bool:
    return name.startswith(tag(owner) + "v")


def table_name(owner: str) -> str:
    return f"dockyard-{owner}"


def valid_ifname(name: str) -> bool:
    return bool(_VALID_IFNAME.match(name)) and name not in (".", "..")
