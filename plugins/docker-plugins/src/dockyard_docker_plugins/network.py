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
import dataclasses
import ipaddress
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from typing import Any, ClassVar, TypeVar

from dockyard.errors import DockyardError, Forbidden, InvalidArgument, NotFound
from dockyard.jsonfile import write_json
from dockyard.model import Network
from dockyard.specs.cluster import ClusterStore
from dockyard.specs.network import (
    GLOBAL_ADDRESS_SPACE,
    GLOBAL_SCOPE,
    LOCAL_ADDRESS_SPACE,
    ClusterNetworkChange,
    EndpointRequest,
    EndpointResult,
    GlobalScopeDriver,
    NetworkDriver,
    PeerEndpoint,
)
from dockyard_docker_plugins.catalog import start_view
from dockyard_docker_plugins.client import PluginFailed
from dockyard_docker_plugins.cluster import ClusterView, advertise_address
from dockyard_docker_plugins.remote import RemotePlugin

log = logging.getLogger(__name__)
T = TypeVar("T")
GENERIC = "com.docker.network.generic"
PORTMAP = "com.docker.network.portmap"
EXPOSED = "com.docker.network.endpoint.exposedports"
_PROTO = {"tcp": 6, "udp": 17, "sctp": 132}


class RemoteNetworkDriver(RemotePlugin, NetworkDriver):
    interface: ClassVar[str] = "NetworkDriver"
    address_space: ClassVar[str] = LOCAL_ADDRESS_SPACE

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.scope = "local"
        self.connectivity_scope = ""

    async def setup(self) -> None:
        """Activate the plugin and read its scope. A ``global`` plugin on an engine with a
        cluster store makes this adapter the global-scope one (:meth:`_become_global`)."""
        await self.activate()
        caps = await self.call("GetCapabilities", {}, optional=True)
        self.scope = str(caps.get("Scope") or "local")
        self.connectivity_scope = str(caps.get("ConnectivityScope") or "")
        if self.scope != "global":
            return
        if ClusterStore in self.context.provided and ClusterView in self.context.provided:
            await self._become_global()
            return
        advertise = advertise_address(str(self.context.daemon_config.get("cluster-advertise") or ""))
        if advertise:  # dockerd tells global drivers of its own node
            await self.call("DiscoverNew", {"DiscoveryType": 1,
                                            "DiscoveryData": {"Address": advertise, "self": True}}, optional=True)

    async def _become_global(self) -> None:
        """Docker learns a remote driver's scope from ``GetCapabilities`` at activation, but the
        kernel asks the driver source for a class synchronously, before the plugin can be
        reached. So the adapter starts local, and here becomes its name's
        :class:`GlobalRemoteNetworkDriver` (a subclass with the same attributes and the
        ``global-scope`` capability, checked as the registry checks any driver class): the
        network service then treats its networks as cluster-wide."""
        cls = type(self)
        info = dataclasses.replace(cls.info, capabilities=cls.info.capabilities | {GLOBAL_SCOPE})
        variant = type(f"GlobalRemoteNetworkDriver[{self.plugin_name}]", (GlobalRemoteNetworkDriver,),
                       {"info": info, "plugins": self.plugins, "plugin_name": self.plugin_name})
        from dockyard.registry import check_driver_class

        problem = check_driver_class(variant, "network")
        if problem:
            raise PluginFailed(f"plugin {self.plugin_name}: its global-scope adapter is unusable: {problem}")
        self.__class__ = variant
        assert isinstance(self, GlobalRemoteNetworkDriver)
        try:
            await self._start_global()
        except BaseException:
            self.__class__ = cls  # local again: the kernel runs setup again on the next use
            raise

    async def _start_global(self) -> None:  # GlobalRemoteNetworkDriver's
        raise NotImplementedError

    def status(self) -> list[tuple[str, str]]:
        return [("Plugin", self.address()), ("Scope", self.scope)]

    # ------------------------------------------------------------------ networks
    async def create_network(self, network: Any) -> dict[str, Any]:
        await self._create_here(network)
        return {"plugin_scope": self.scope}

    async def _create_here(self, network: Any) -> None:
        """``CreateNetwork`` on this engine's plugin, with the pools in the adapter's address space."""
        v4, v6 = [], []
        for pool in network.ipam_pools:
            net = ipaddress.ip_network(pool.subnet, strict=False)
            data = {"AddressSpace": self.address_space, "Pool": pool.subnet,
                    "Gateway": f"{pool.gateway}/{net.prefixlen}" if pool.gateway else "",
                    "AuxAddresses": {k: f"{v}/{net.prefixlen}" for k, v in pool.aux_addresses.items()}}
            (v4 if net.version == 4 else v6).append(data)
        await self.call("CreateNetwork", {
            "NetworkID": network.id,
            "Options": {GENERIC: dict(network.options), "com.docker.network.enable_ipv6": network.enable_ipv6,
                        "com.docker.network.internal": network.internal},
            "IPv4Data": v4, "IPv6Data": v6})

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


class GlobalRemoteNetworkDriver(RemoteNetworkDriver, GlobalScopeDriver):
    """A plugin whose ``GetCapabilities`` says ``"Scope": "global"``, on an engine with a cluster
    store: what libnetwork does with such a remote driver in classic ``--cluster-store`` mode.

    - ``create_network`` publishes the definition in the cluster store (the name is the
      cluster's) before ``CreateNetwork`` reaches this engine's plugin, and withdraws it when
      the plugin refuses. Its pools are in the global address space (the network service asks
      the IPAM driver for them there), so addresses are unique cluster-wide.
    - Every engine lists it (:mod:`dockyard_docker_plugins.catalog`). On another engine the
      plugin gets ``CreateNetwork`` when the network is first used there (the first join), as
      libnetwork creates a global network on a host lazily.
    - Endpoints are published on the engine's lease; :meth:`peers` are the other engines'. They
      are kept in the driver's data directory too, and published again at the next start (a
      stopped engine's lease ends; its containers run on), until they leave.
    - ``delete_network`` is refused while another engine has an endpoint on it; otherwise
      ``DeleteNetwork`` reaches this engine's plugin and the definition leaves the store, and
      every other engine whose plugin had it gets ``DeleteNetwork`` when it sees it go (or at
      its next start, when it went while the engine was down).
    - Node discovery: ``DiscoverNew`` for this engine (``self``) and each other engine of the
      cluster (their ``--cluster-advertise`` address), then ``DiscoverNew``/``DiscoverDelete``
      as engines come and go.
    """

    address_space: ClassVar[str] = GLOBAL_ADDRESS_SPACE
    _view: ClusterView
    _created: set[str]
    _published: dict[str, dict[str, Any]]
    _tasks: list[asyncio.Task[None]]
    _creating: dict[str, asyncio.Lock]
    _writing: asyncio.Lock

    async def _start_global(self) -> None:
        view = await start_view(self.context)
        assert view is not None  # _become_global checked the store and the view are provided
        self._view, self._tasks, self._creating, self._writing = view, [], {}, asyncio.Lock()
        try:
            await self._follow(view)
        except BaseException:
            await view.release()
            raise

    async def _follow(self, view: ClusterView) -> None:
        self._created = self._load_created()
        self._published = self._load_published()
        for ep_id, ep in sorted(self._published.items()):
            await view.publish_endpoint(ep["network_id"], ep_id, ep["doc"])
        nodes = view.node_changes()  # subscribed before the listing: nothing missed
        changes = view.changes()
        if view.node:
            await self._discover(view.node, True, own=True)
        for address in view.nodes():
            await self._discover(address, True)
        defined = {n.id for n in view.definitions()}
        for net_id in sorted(self._created - defined):  # removed elsewhere while this engine was away
            await self._delete_here(net_id)
        self._tasks = [asyncio.create_task(self._follow_nodes(nodes), name=f"plugin-{self.plugin_name}-nodes"),
                       asyncio.create_task(self._follow_networks(changes), name=f"plugin-{self.plugin_name}-nets")]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._view.release()

    def status(self) -> list[tuple[str, str]]:
        return [*super().status(), ("Cluster nodes", str(len(self._view.nodes()) + 1))]

    # ------------------------------------------------------------------ this engine's record
    @property
    def _created_file(self) -> Any:
        return self.context.data_dir / "created.json"

    def _load_created(self) -> set[str]:
        """Networks this engine's plugin got ``CreateNetwork`` for (kept across restarts)."""
        try:
            doc = json.loads(self._created_file.read_text())
        except (OSError, ValueError):
            return set()
        return {str(i) for i in doc} if isinstance(doc, list) else set()

    async def _save_created(self) -> None:
        await self._write(self._created_file, sorted(self._created))

    async def _save_published(self) -> None:
        await self._write(self._published_file, {k: dict(v) for k, v in self._published.items()})

    async def _write(self, path: Any, doc: Any) -> None:
        """One write at a time, in order: joins run concurrently, and a snapshot (``doc``, taken
        before the thread) written late must not replace a newer one."""
        async with self._writing:
            await asyncio.to_thread(write_json, path, doc)

    @property
    def _published_file(self) -> Any:
        return self.context.data_dir / "endpoints.json"

    def _load_published(self) -> dict[str, dict[str, Any]]:
        """This engine's endpoints as published: endpoint ID -> ``{"network_id", "doc"}``."""
        try:
            doc = json.loads(self._published_file.read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): v for k, v in doc.items() if isinstance(v, dict)} if isinstance(doc, dict) else {}

    # ------------------------------------------------------------------ discovery
    async def _discover(self, address: str, present: bool, own: bool = False) -> None:
        method = "DiscoverNew" if present else "DiscoverDelete"
        try:
            await self.call(method, {"DiscoveryType": 1, "DiscoveryData": {"Address": address, "self": own}},
                            optional=True)
        except DockyardError as exc:  # the plugin's business; the network keeps working
            log.warning("plugin %s: %s %s: %s", self.plugin_name, method, address, exc)

    async def _follow_nodes(self, changes: Any) -> None:
        async for change in changes:
            await self._discover(change.address, change.present)

    async def _follow_networks(self, changes: Any) -> None:
        async for change in changes:
            if change.kind == "network" and change.network is None and change.network_id in self._created:
                await self._delete_here(change.network_id)

    async def _delete_here(self, network_id: str) -> None:
        """``DeleteNetwork`` on this engine's plugin for a network removed from the cluster."""
        try:
            await self.call("DeleteNetwork", {"NetworkID": network_id})
        except DockyardError as exc:
            log.warning("plugin %s: DeleteNetwork %s (removed from the cluster): %s", self.plugin_name,
                        network_id[:12], exc)
        self._created.discard(network_id)
        await self._save_created()

    # ------------------------------------------------------------------ GlobalScopeDriver
    async def cluster_networks(self) -> list[Network]:
        return [n for n in self._view.definitions() if n.driver == self.plugin_name]

    def peers(self, network_id: str) -> list[PeerEndpoint]:
        return self._view.peers(network_id)

    def cluster_changes(self) -> AsyncIterator[ClusterNetworkChange]:
        return self._view.changes()

    # ------------------------------------------------------------------ networks
    async def create_network(self, network: Any) -> dict[str, Any]:
        await self._view.publish_network(network)
        try:
            await self._create_here(network)
        except BaseException:
            with contextlib.suppress(DockyardError, OSError):
                await self._view.remove_network(network)
            raise
        self._created.add(network.id)
        await self._save_created()
        return {"plugin_scope": self.scope}

    async def delete_network(self, network: Any) -> None:
        others = await self._view.remote_endpoint_nodes(network.id)
        if others:
            raise Forbidden(f"network {network.name} has active endpoints on other hosts ({', '.join(others)})")
        if network.id in self._created:
            await self.call("DeleteNetwork", {"NetworkID": network.id})
            self._created.discard(network.id)
            await self._save_created()
        await self._view.remove_network(network)

    async def _ensure_here(self, network: Any) -> None:
        """``CreateNetwork`` on this engine's plugin before its first endpoint here."""
        lock = self._creating.setdefault(network.id, asyncio.Lock())
        async with lock:
            if network.id in self._created:
                return
            await self._create_here(network)
            self._created.add(network.id)
            await self._save_created()

    # ------------------------------------------------------------------ endpoints
    async def join(self, request: EndpointRequest) -> EndpointResult:
        await self._ensure_here(request.network)
        result = await super().join(request)
        doc = {"container_id": request.container_id, "name": request.container_name,
               "aliases": list(request.aliases), "ipv4": result.ipv4_address, "ipv6": result.ipv6_address,
               "mac": result.mac_address}
        try:
            self._published[request.endpoint_id] = {"network_id": request.network.id, "doc": doc}
            await self._save_published()
            await self._view.publish_endpoint(request.network.id, request.endpoint_id, doc)
        except BaseException:
            self._published.pop(request.endpoint_id, None)
            with contextlib.suppress(DockyardError, OSError):
                await self._save_published()
                await self._view.unpublish_endpoint(request.network.id, request.endpoint_id)
            with contextlib.suppress(DockyardError, OSError):
                await super().leave(request, result)
            raise
        return result

    async def leave(self, request: EndpointRequest, result: EndpointResult) -> None:
        if self._published.pop(request.endpoint_id, None) is not None:
            await self._save_published()
        try:
            await self._view.unpublish_endpoint(request.network.id, request.endpoint_id)
        except (DockyardError, OSError) as exc:  # its lease ends it; the plugin must still leave
            log.warning("plugin %s: could not withdraw endpoint %s from the cluster: %s", self.plugin_name,
                        request.endpoint_id[:12], exc)
        await super().leave(request, result)


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
