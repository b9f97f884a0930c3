"""Isolation between this daemon's CNI networks: an nft table ``ip dockyard-cni-<owner>`` whose
``forward`` chain drops traffic from one of our CNI bridges to another (DNATed connections,
i.e. published ports, pass). The CNI bridge plugin routes between bridges otherwise. The table
is regenerated as a whole in one transaction, and deleted while fewer than two networks exist."""

from __future__ import annotations

import asyncio
import json
import shutil
from typing import Any

from dockyard.errors import Unavailable

FAMILY = "ip"
TIMEOUT = 30.0


def table_name(owner: str) -> str:
    return f"dockyard-cni-{owner}"


def commands(table: str, bridges: list[str]) -> list[dict[str, Any]]:
    t = {"family": FAMILY, "name": table}
    cmds: list[dict[str, Any]] = [{"add": {"table": t}}, {"delete": {"table": t}}]
    bridges = sorted(set(bridges))
    if len(bridges) < 2:
        return cmds
    cmds.append({"add": {"table": t}})
    cmds.append({"add": {"chain": {"family": FAMILY, "table": table, "name": "forward", "type": "filter",
                                   "hook": "forward", "prio": 0, "policy": "accept"}}})

    def rule(*expr: dict[str, Any]) -> None:
        cmds.append({"add": {"rule": {"family": FAMILY, "table": table, "chain": "forward", "expr": list(expr)}}})

    rule({"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}}, {"accept": None})
    for b in bridges:
        others = [o for o in bridges if o != b]
        rule({"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": b}},
             {"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": {"set": others}}},
             {"drop": None})
    return cmds


async def apply(table: str, bridges: list[str]) -> None:
    if shutil.which("nft") is None:
        raise Unavailable("the nft command (nftables) is not installed; the cni driver needs it for isolation")
    proc = await asyncio.create_subprocess_exec("nft", "-j", "-f", "-", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        _out, err = await asyncio.wait_for(
            proc.communicate(json.dumps({"nftables": commands(table, bridges)}).encode()), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise Unavailable(f"nft timed out after {TIMEOUT:.0f}s") from None
    if proc.returncode != 0:
        raise Unavailable(f"nft failed: {err.decode(errors='replace').strip()}")
