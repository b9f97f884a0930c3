"""A Docker network plugin (stdlib and pyroute2 only, no dockyard): a Linux bridge per network holding the
gateway address, a veth pair per endpoint made at Join (the host end on the bridge, the other
handed to the daemon as SrcName). Interfaces are named PREFIX... so leak checks find them.

With PLUGIN_SCOPE=global its GetCapabilities says ``"Scope": "global"`` (a multi-host plugin in
Docker's --cluster-store mode: one process per host, each keeping its own networks); it accepts
DiscoverNew/DiscoverDelete.

usage: netplugin.py SOCKET PREFIX"""

from __future__ import annotations

import itertools
import os
import sys

from _serve import serve
from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

SOCKET, PREFIX = sys.argv[1], sys.argv[2]
SCOPE = os.environ.get("PLUGIN_SCOPE", "local")
GENERIC = "com.docker.network.generic"
ALLOWED = {"mtu"}
networks: dict[str, dict] = {}
endpoints: dict[str, dict] = {}
serial = itertools.count(1)


def _index(ipr: IPRoute, name: str) -> int:
    return ipr.link_lookup(ifname=name)[0]


def add_bridge(name: str, gateway: str) -> None:
    with IPRoute() as ipr:
        ipr.link("add", ifname=name, kind="bridge")
        idx = _index(ipr, name)
        if gateway:
            addr, _, prefix = gateway.partition("/")
            ipr.addr("add", index=idx, address=addr, prefixlen=int(prefix or 32))
        ipr.link("set", index=idx, state="up")


def add_veth(host: str, peer: str, bridge: str) -> None:
    with IPRoute() as ipr:
        ipr.link("add", ifname=host, kind="veth", peer=peer)
        ipr.link("set", index=_index(ipr, host), master=_index(ipr, bridge), state="up")


def delete_link(name: str) -> None:
    """Remove a link; an absent one is not an error (the daemon may have moved or removed it)."""
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if found:
            try:
                ipr.link("del", index=found[0])
            except NetlinkError:
                pass


def create_network(b: dict) -> dict:
    opts = (b.get("Options") or {}).get(GENERIC) or {}
    bad = sorted(set(opts) - ALLOWED)
    if bad:
        return {"Err": f"invalid option {bad[0]}"}
    bridge = f"{PREFIX}b{next(serial)}"
    data = (b.get("IPv4Data") or [{}])[0]
    gateway = data.get("Gateway") or ""
    add_bridge(bridge, gateway)
    internal = bool((b.get("Options") or {}).get("com.docker.network.internal"))
    networks[b["NetworkID"]] = {"bridge": bridge, "gateway": gateway.split("/")[0], "internal": internal}
    return {}


def delete_network(b: dict) -> dict:
    net = networks.pop(b["NetworkID"], None)
    if net is None:
        return {"Err": f"no such network {b['NetworkID'][:12]}"}
    delete_link(net["bridge"])
    return {}


def create_endpoint(b: dict) -> dict:
    if b["NetworkID"] not in networks:
        return {"Err": f"no such network {b['NetworkID'][:12]}"}
    endpoints[b["EndpointID"]] = {"network": b["NetworkID"], "veth": ""}
    return {}  # the daemon sent the address: the Interface is not echoed


def join(b: dict) -> dict:
    if os.environ.get("FAIL_JOIN"):
        return {"Err": "join refused by the test"}
    ep = endpoints.get(b["EndpointID"])
    if ep is None:
        return {"Err": f"no such endpoint {b['EndpointID'][:12]}"}
    net = networks[ep["network"]]
    n = next(serial)
    host, peer = f"{PREFIX}h{n}", f"{PREFIX}c{n}"
    add_veth(host, peer, net["bridge"])
    ep["veth"] = host
    reply = {"InterfaceName": {"SrcName": peer, "DstPrefix": "eth"}}
    if not net["internal"] and net["gateway"]:
        reply["Gateway"] = net["gateway"]
    return reply


def leave(b: dict) -> dict:
    ep = endpoints.get(b["EndpointID"])
    if ep and ep["veth"]:
        delete_link(ep["veth"])
        ep["veth"] = ""
    return {}


def delete_endpoint(b: dict) -> dict:
    leave(b)
    endpoints.pop(b["EndpointID"], None)
    return {}


serve(SOCKET, ["NetworkDriver"], {
    "NetworkDriver.GetCapabilities": lambda _b: {"Scope": SCOPE, "ConnectivityScope": SCOPE},
    "NetworkDriver.DiscoverNew": lambda _b: {}, "NetworkDriver.DiscoverDelete": lambda _b: {},
    "NetworkDriver.CreateNetwork": create_network, "NetworkDriver.DeleteNetwork": delete_network,
    "NetworkDriver.CreateEndpoint": create_endpoint, "NetworkDriver.DeleteEndpoint": delete_endpoint,
    "NetworkDriver.Join": join, "NetworkDriver.Leave": leave,
    "NetworkDriver.EndpointOperInfo": lambda _b: {"Value": {}},
}, log=open(os.environ["PLUGIN_LOG"], "a") if os.environ.get("PLUGIN_LOG") else None)
