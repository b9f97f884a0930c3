"""A Docker IPAM plugin (stdlib only): pools of POOL_BASE (/24s), handed out in order; the
gateway is the first address, others follow.

usage: ipamplugin.py SOCKET POOL_BASE"""

from __future__ import annotations

import ipaddress
import os
import sys

from _serve import serve

SOCKET, BASE = sys.argv[1], ipaddress.ip_network(sys.argv[2])
pools: dict[str, dict] = {}  # PoolID -> {"net", "used": set, "refs"}


def request_pool(b: dict) -> dict:
    if b.get("V6"):
        return {"Err": "IPv6 is not supported by this plugin"}
    if b.get("Pool"):
        net = ipaddress.ip_network(b["Pool"])
    else:
        taken = {p["net"] for p in pools.values()}
        net = next(n for n in BASE.subnets(new_prefix=24) if n not in taken)
    pool_id = f"{b.get('AddressSpace')}/{net}"
    pool = pools.setdefault(pool_id, {"net": net, "used": set(), "refs": 0})
    pool["refs"] += 1
    return {"PoolID": pool_id, "Pool": str(net), "Data": {}}


def release_pool(b: dict) -> dict:
    pool = pools.get(b["PoolID"])
    if pool is None:
        return {"Err": f"no such pool {b['PoolID']}"}
    pool["refs"] -= 1
    if pool["refs"] <= 0:
        del pools[b["PoolID"]]
    return {}


def request_address(b: dict) -> dict:
    pool = pools.get(b["PoolID"])
    if pool is None:
        return {"Err": f"no such pool {b['PoolID']}"}
    net, used = pool["net"], pool["used"]
    if b.get("Address"):
        addr = ipaddress.ip_address(b["Address"])
        if addr in used:
            return {"Err": f"address {addr} already in use"}
    else:
        addr = next(a for a in net.hosts() if a not in used)
    used.add(addr)
    return {"Address": f"{addr}/{net.prefixlen}", "Data": {}}


def release_address(b: dict) -> dict:
    pool = pools.get(b["PoolID"])
    addr = ipaddress.ip_address(b["Address"].split("/")[0])
    if pool is None or addr not in pool["used"]:
        return {"Err": f"address {addr} not found"}
    pool["used"].discard(addr)
    return {}


serve(SOCKET, ["IpamDriver"], {
    "IpamDriver.GetCapabilities": lambda _b: {"RequiresMACAddress": False},
    "IpamDriver.GetDefaultAddressSpaces": lambda _b: {"LocalDefaultAddressSpace": "fake-local",
                                                      "GlobalDefaultAddressSpace": "fake-global"},
    "IpamDriver.RequestPool": request_pool, "IpamDriver.ReleasePool": release_pool,
    "IpamDriver.RequestAddress": request_address, "IpamDriver.ReleaseAddress": release_address,
}, log=open(os.environ["PLUGIN_LOG"], "a") if os.environ.get("PLUGIN_LOG") else None)
