"""``NetworkDriver`` over a Docker network plugin (libnetwork's ``remote`` driver).

``create_network`` is ``CreateNetwork`` (the user's ``-o`` options under
``com.docker.network.generic``, the IPAM pools as ``IPv4Data``/``IPv6Data``); ``join`` is
``CreateEndpoint`` (the addresses IPAM gave), ``Join`` (``SandboxKey`` = the container's netns),
then what dockerd does with the answer: the interface the plugin made (``SrcName``) is moved into
the namespace and named ``eth<N>`` (``DstPrefix`` + index), given its addresses and MAC, brought
up, with the default route through ``Gateway`` and the ``StaticRoutes``; with published ports,
``ProgramExternalConnectivity``. A step that fails undoes the ones before it (an endpoint
created before a failed ``Join`` is deleted), so nothing half-made remains. ``leave`` moves the
interface back (unless the sandbox is closing), then ``Leave`` and ``DeleteEndpoint``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.specs.network import EndpointRequest, EndpointResult, NetworkDriver
from dockyard_docker_plugins.client import PluginFailed
from dockyard_docker_plugins.remote import RemotePlugin

log = logging.getLogger(__name__)
T = TypeVar("T")
GENERIC = "com.docker.network.generic"
PORTMAP = "com.docker.network.portmap"
EXPOSED = "com.docker.network.endpoint.exposedports"
_PROTO = {"tcp": 6, "udp": 17, "sctp": 132}


class RemoteNetworkDriver(RemotePlugin, NetworkDriver):
    interface: ClassVar[str] = "NetworkDriver"

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.scope = "local"
        self.connectivity_scope = ""

    async def setup(self) -> None:
        await self.activate()
        caps = await self.call("GetCapabilities", {}, optional=True)
        self.scope = str(caps.get("Scope") or "local")
        self.connectivity_scope = str(caps.get("ConnectivityScope") or "")
        advertise = str(self.context.daemon_config.get("cluster-advertise") or "")
        if advertise and self.scope == "global":  # dockerd tells global drivers of its own node
            await self.call("DiscoverNew", {"DiscoveryType": 1,
                                            "DiscoveryData": {"Address": advertise.rsplit(":", 1)[0],
                                                              "self": True}}, optional=True)

    def status(self) -> list[tuple[str, str]]:
        return [("Plugin", self.address()), ("Scope", self.scope)]

    # ------------------------------------------------------------------ networks
    async def create_network(self, network: Any) -> dict[str, Any]:
        v4, v6 = [], []
        for pool in network.ipam_pools:
            net = ipaddress.ip_network(pool.subnet, strict=False)
            data = {"AddressSpace": "LocalDefault", "Pool": pool.subnet,
                    "Gateway": f"{pool.gateway}/{net.prefixlen}" if pool.gateway else "",
                    "AuxAddresses": {k: f"{v}/{net.prefixlen}" for k, v in pool.aux_addresses.items()}}
            (v4 if net.version == 4 else v6).append(data)
        await self.call("CreateNetwork", {
            "NetworkID": network.id,
            "Options": {GENERIC: dict(network.options), "com.docker.network.enable_ipv6": network.enable_ipv6,
                        "com.docker.network.internal": network.internal},
            "IPv4Data": v4, "IPv6Data": v6})
        return {"plugin_scope": self.scope}

    async def delete_network(self, network: Any) -> None:
        await self.call("DeleteNetwork", {"NetworkID": network.id})

    # ------------------------------------------------------------------ endpoints
    async def join(self, request: EndpointRequest) -> EndpointResult:
        net_id, ep_id = request.network.id, request.endpoint_id
        options: dict[str, Any] = dict(request.options)
        if request.ports:
            options[EXPOSED] = [{"Proto": _PROTO.get(p.protocol, 6), "Port": p.container_port} for p in request.ports]
        sent = {"Address": request.ipv4_address, "AddressIPv6": request.ipv6_address,
                "MacAddress": request.mac_address}
        reply = await self.call("CreateEndpoint", {"NetworkID": net_id, "EndpointID": ep_id, "Options": options,
                                                   "Interface": sent})
        got = reply.get("Interface") or {}
        if not isinstance(got, dict):
            await self._undo(net_id, ep_id, joined=False)
            raise PluginFailed(f"plugin {self.plugin_name}: CreateEndpoint answered Interface={got!r}")
        # the plugin may fill what was not sent (an address, a MAC); it may not change what was
        addr4 = request.ipv4_address or str(got.get("Address") or "")
        addr6 = request.ipv6_address or str(got.get("AddressIPv6") or "")
        mac = request.mac_address or str(got.get("MacAddress") or "")
        joined = False
        try:
            answer = await self.call("Join", {"NetworkID": net_id, "EndpointID": ep_id,
                                              "SandboxKey": request.netns_path, "Options": options})
            joined = True
            iface = answer.get("InterfaceName") or {}
            src = str(iface.get("SrcName") or "") if isinstance(iface, dict) else ""
            if not src:
                raise PluginFailed(f"plugin {self.plugin_name}: Join answered no InterfaceName.SrcName")
            prefix = str(iface.get("DstPrefix") or "eth")
            index = request.ifname[3:] if request.ifname.startswith("eth") else "0"
            ifname = f"{prefix}{index}"
            gateway = str(answer.get("Gateway") or "")
            gateway6 = str(answer.get("GatewayIPv6") or "")
            routes = answer.get("StaticRoutes") or []
            if not isinstance(routes, list):
                raise PluginFailed(f"plugin {self.plugin_name}: Join answered StaticRoutes={routes!r}")
            await asyncio.to_thread(_move_in, self.plugin_name, src, request.netns_path, ifname,
                                    [a for a in (addr4, addr6) if a], mac, gateway, gateway6, routes)
            if request.ports:
                portmap = [{"Proto": _PROTO.get(p.protocol, 6), "Port": p.container_port,
                            "HostIP": p.host_ip, "HostPort": p.host_port, "HostPortEnd": p.host_port_end}
                           for p in request.ports]
                await self.call("ProgramExternalConnectivity", {"NetworkID": net_id, "EndpointID": ep_id,
                                                                "Options": {PORTMAP: portmap, EXPOSED: options[EXPOSED]}},
                                optional=True)
        except BaseException:
            await self._undo(net_id, ep_id, joined=joined)
            raise
        return EndpointResult(ifname=ifname, mac_address=mac, ipv4_address=addr4, ipv6_address=addr6,
                              gateway=gateway.split("/")[0], ports=list(request.ports),
                              extra={"src_name": src, "ifname": ifname})

    async def _undo(self, net_id: str, ep_id: str, joined: bool) -> None:
        """Best effort: the plugin keeps nothing of a join that failed (its own failure is logged;
        the caller raises the first error)."""
        calls = ([("Leave", False)] if joined else []) + [("DeleteEndpoint", False)]
        for method, _ in calls:
            try:
                await self.call(method, {"NetworkID": net_id, "EndpointID": ep_id})
            except (DockyardError, OSError) as exc:
                log.warning("plugin %s: %s after a failed join: %s", self.plugin_name, method, exc)

    async def leave(self, request: EndpointRequest, result: EndpointResult) -> None:
        net_id, ep_id = request.network.id, request.endpoint_id
        src = str(result.extra.get("src_name") or "")
        if src and not request.sandbox_closing and os.path.exists(request.netns_path):
            with contextlib.suppress(OSError, DockyardError):
                await asyncio.to_thread(_move_out, request.netns_path, str(result.extra.get("ifname") or
                                                                          result.ifname), src)
        if result.ports:
            await self.call("RevokeExternalConnectivity", {"NetworkID": net_id, "EndpointID": ep_id},
                            optional=True)
        await self.call("Leave", {"NetworkID": net_id, "EndpointID": ep_id}, optional=True)
        await self.call("DeleteEndpoint", {"NetworkID": net_id, "EndpointID": ep_id})


# ---------------------------------------------------------------------- netlink (in threads)
def _in_netns(netns_path: str, fn: Callable[[], T]) -> T:
    """Run ``fn`` in a fresh thread inside the namespace (setns changes the calling thread only,
    and the thread ends, so no pooled thread stays in a container's namespace)."""
    from dockyard.netns import run_in

    return run_in(netns_path, fn)


def _move_in(plugin: str, src: str, netns_path: str, ifname: str, addresses: list[str], mac: str,
             gateway: str, gateway6: str, routes: list[Any]) -> None:
    from pyroute2 import IPRoute
    from pyroute2.netlink.exceptions import NetlinkError

    try:
        fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise NotFound(f"network namespace {netns_path} does not exist") from None
    try:
        with IPRoute() as ipr:
            idx = ipr.link_lookup(ifname=src)
            if not idx:
                raise PluginFailed(f"plugin {plugin}: Join named interface {src!r}, which does not exist")
            ipr.link("set", index=idx[0], net_ns_fd=fd)
    finally:
        os.close(fd)

    def configure() -> None:
        with IPRoute() as ns:
            (idx,) = ns.link_lookup(ifname=src) or [None]
            if idx is None:
                raise PluginFailed(f"plugin {plugin}: interface {src} vanished while it was moved")
            ns.link("set", index=idx, state="down")
            ns.link("set", index=idx, ifname=ifname, **({"address": mac} if mac else {}))
            for cidr in addresses:
                ip, _, plen = cidr.partition("/")
                ns.addr("add", index=idx, address=ip, prefixlen=int(plen or (32 if ":" not in ip else 128)))
            ns.link("set", index=idx, state="up")
            ns.link("set", index=1, state="up")
            for gw in (gateway, gateway6):
                if gw:
                    ns.route("replace", dst="default", gateway=gw.split("/")[0], oif=idx,
                             family=10 if ":" in gw else 2)
            for r in routes:
                if not isinstance(r, dict) or not r.get("Destination"):
                    raise InvalidArgument(f"plugin {plugin}: Join answered a static route {r!r}")
                dst = str(r["Destination"])
                fam = 10 if ":" in dst else 2
                if int(r.get("RouteType") or 0) == 1:  # connected
                    ns.route("replace", dst=dst, oif=idx, family=fam, scope=253)
                else:
                    ns.route("replace", dst=dst, gateway=str(r.get("NextHop") or "").split("/")[0],
                             oif=idx, family=fam)

    try:
        _in_netns(netns_path, configure)
    except NetlinkError as exc:
        raise PluginFailed(f"plugin {plugin}: setting up {src} as {ifname} failed: {exc}") from exc


def _move_out(netns_path: str, ifname: str, src: str) -> None:
    """The interface goes back to the daemon's namespace under the plugin's name (dockerd does
    so before ``Leave``, so the plugin can delete what it made)."""
    from pyroute2 import IPRoute

    host = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        def back() -> None:
            with IPRoute() as ns:
                (idx,) = ns.link_lookup(ifname=ifname) or [None]
                if idx is None:
                    return
                ns.link("set", index=idx, state="down")
                ns.link("set", index=idx, ifname=src)
                ns.link("set", index=idx, net_ns_fd=host)
        _in_netns(netns_path, back)
    finally:
        os.close(host)
