"""The driver's nftables rules, written as libnftables JSON and applied with ``nft -j -f -``.

All rules of one daemon live in one table, ``ip dockyard-<owner>``, regenerated from the
driver's state and swapped in one transaction (add + delete + add table, then its chains and
rules), so nothing else on the host (another daemon, firewalld, docker) is ever touched, and a
reconcile is the same operation as an update. With no network left the table is deleted.

Published ports (``--userland-proxy=false`` style, no proxy process):

* ``prerouting`` (nat): traffic arriving for a local address (``fib daddr type local``) or for the
  mapping's host IP is DNATed to the container;
* ``output`` (nat): the same for connections made on the host itself, including ``127.0.0.1``;
* ``postrouting`` (nat): connections from ``127.0.0.0/8`` leaving through a bridge are
  masqueraded to the bridge address (``route_localnet`` is set on our bridges so the kernel
  routes them at all); a container reaching its own published port (hairpin) is masqueraded;
  egress of non-internal networks with masquerading on is masqueraded;
* ``guard`` (filter, prerouting, raw priority): packets from our bridges to ``127.0.0.0/8`` are
  dropped, so ``route_localnet`` does not expose host-local services to containers;
* ``forward`` (filter): DNATed connections pass; other traffic between two of our bridges is
  dropped (network isolation); an internal network's traffic never leaves its bridge.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import Unavailable

FAMILY = "ip"
NFT_TIMEOUT = 15.0


@dataclass(frozen=True)
class NetworkRules:
    bridge: str
    subnets: tuple[str, ...]  # IPv4 CIDRs
    internal: bool = False
    masquerade: bool = True


@dataclass(frozen=True)
class PortRule:
    bridge: str
    container_ip: str
    container_port: int
    protocol: str  # tcp | udp | sctp
    host_ip: str  # "" = every local address
    host_port: int


@dataclass
class Ruleset:
    table: str
    networks: list[NetworkRules] = field(default_factory=list)
    ports: list[PortRule] = field(default_factory=list)

    def commands(self) -> list[dict[str, Any]]:
        """The JSON commands replacing the table with this ruleset (one transaction)."""
        t = {"family": FAMILY, "name": self.table}
        cmds: list[dict[str, Any]] = [{"add": {"table": t}}, {"delete": {"table": t}}]
        if not self.networks:
            return cmds
        cmds.append({"add": {"table": t}})
        chains = {
            "guard": ("filter", "prerouting", -300),
            "prerouting": ("nat", "prerouting", -100),
            "output": ("nat", "output", -100),
            "postrouting": ("nat", "postrouting", 100),
            "forward": ("filter", "forward", 0),
        }
        for name, (kind, hook, prio) in chains.items():
            cmds.append({"add": {"chain": {"family": FAMILY, "table": self.table, "name": name,
                                           "type": kind, "hook": hook, "prio": prio,
                                           "policy": "accept"}}})

        def rule(chain: str, *expr: dict[str, Any]) -> None:
            cmds.append({"add": {"rule": {"family": FAMILY, "table": self.table, "chain": chain,
                                          "expr": list(expr)}}})

        bridges = [n.bridge for n in self.networks]
        rule("guard", _eq(_meta("iifname"), _set(bridges)),
             _eq(_payload("ip", "daddr"), _prefix("127.0.0.0", 8)), {"drop": None})

        # One rule per (container, protocol, host IP) however many ports it publishes: a set of
        # host ports and a host port -> container port map, so port ranges stay a few rules.
        groups: dict[tuple[str, str, str], list[PortRule]] = {}
        for p in self.ports:
            groups.setdefault((p.container_ip, p.protocol, p.host_ip), []).append(p)
        for (cip, protocol, host_ip), group in groups.items():
            group.sort(key=lambda p: p.host_port)
            if len(group) == 1:
                dport = _eq(_payload(protocol, "dport"), group[0].host_port)
                dnat = {"dnat": {"addr": cip, "port": group[0].container_port}}
                cports: Any = group[0].container_port
            else:
                dport = _eq(_payload(protocol, "dport"), {"set": [p.host_port for p in group]})
                dnat = {"dnat": {"addr": cip, "port": {"map": {
                    "key": _payload(protocol, "dport"),
                    "data": {"set": [[p.host_port, p.container_port] for p in group]}}}}}
                cports = _set(sorted({p.container_port for p in group}))
            if host_ip:
                daddr = _eq(_payload("ip", "daddr"), host_ip)
            else:
                daddr = _eq({"fib": {"result": "type", "flags": ["daddr"]}}, "local")
            if not host_ip.startswith("127."):
                rule("prerouting", daddr, dport, dnat)
            rule("output", daddr, dport, dnat)
            rule("postrouting", _eq(_payload("ip", "saddr"), cip), _eq(_payload("ip", "daddr"), cip),
                 _eq(_payload(protocol, "dport"), cports), {"masquerade": None})
        for bridge in sorted({p.bridge for p in self.ports}):
            rule("postrouting", _eq(_payload("ip", "saddr"), _prefix("127.0.0.0", 8)),
                 _eq(_meta("oifname"), bridge), {"masquerade": None})

        rule("forward", {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
             {"accept": None})
        for n in self.networks:
            if n.internal:
                rule("forward", _eq(_meta("iifname"), n.bridge), _ne(_meta("oifname"), n.bridge),
                     {"drop": None})
                rule("forward", _eq(_meta("oifname"), n.bridge), _ne(_meta("iifname"), n.bridge),
                     {"drop": None})
            elif n.masquerade and n.subnets:
                rule("postrouting", _eq(_payload("ip", "saddr"), _set([_cidr(s) for s in n.subnets])),
                     _ne(_meta("oifname"), n.bridge), {"masquerade": None})
            others = [b for b in bridges if b != n.bridge]
            if others:
                rule("forward", _eq(_meta("iifname"), n.bridge), _eq(_meta("oifname"), _set(others)),
                     {"drop": None})
        return cmds


def _meta(key: str) -> dict[str, Any]:
    return {"meta": {"key": key}}


def _payload(protocol: str, fld: str) -> dict[str, Any]:
    return {"payload": {"protocol": protocol, "field": fld}}


def _prefix(addr: str, length: int) -> dict[str, Any]:
    return {"prefix": {"addr": addr, "len": length}}


def _cidr(cidr: str) -> dict[str, Any]:
    addr, _, length = cidr.partition("/")
    return _prefix(addr, int(length or 32))


def _set(items: list[Any]) -> Any:
    return items[0] if len(items) == 1 else {"set": items}


def _eq(left: Any, right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": left, "right": right}}


def _ne(left: Any, right: Any) -> dict[str, Any]:
    return {"match": {"op": "!=", "left": left, "right": right}}


# ------------------------------------------------------------------------------ running nft
def available() -> bool:
    return shutil.which("nft") is not None


async def run(args: list[str], payload: dict[str, Any] | None = None) -> str:
    """Run ``nft -j <args>`` (JSON on stdin when given); stdout. Failures are Unavailable."""
    if not available():
        raise Unavailable("the nft command (nftables) is not installed")
    proc = await asyncio.create_subprocess_exec(
        "nft", "-j", *args, stdin=asyncio.subprocess.PIPE if payload is not None else None,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    data = json.dumps(payload).encode() if payload is not None else None
    try:
        out, err = await asyncio.wait_for(proc.communicate(data), NFT_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise Unavailable(f"nft {' '.join(args)} timed out after {NFT_TIMEOUT}s") from None
    if proc.returncode != 0:
        raise Unavailable(f"nft {' '.join(args)} failed: {err.decode(errors='replace').strip()}")
    return out.decode()


async def apply(ruleset: Ruleset) -> None:
    await run(["-f", "-"], {"nftables": ruleset.commands()})


async def delete_table(table: str) -> None:
    t = {"family": FAMILY, "name": table}
    await run(["-f", "-"], {"nftables": [{"add": {"table": t}}, {"delete": {"table": t}}]})


async def list_rules(table: str) -> list[dict[str, Any]]:
    """The rules of ``table`` as libnftables JSON objects ([] when the table does not exist)."""
    tables = json.loads(await run(["list", "tables"])).get("nftables", [])
    if not any(i.get("table", {}).get("name") == table and i["table"]["family"] == FAMILY for i in tables):
        return []
    doc = json.loads(await run(["list", "table", FAMILY, table]))
    return [i["rule"] for i in doc.get("nftables", []) if "rule" in i]
