"""The network service: networks, their IPAM pools, endpoints (a container on a network) and
the embedded DNS of user-defined networks.

The service composes two drivers per network: its IPAM driver (``network.ipam_driver``,
``dockyard.drivers.ipam``) for pools and addresses, and its network driver (``network.driver``,
``dockyard.drivers.network``) for the data plane. Every step is recorded in the state store
before or right after it happens, so a daemon killed at any point finishes or rolls back the
step at the next :meth:`NetworkService.start`:

- a network is stored as ``creating`` (name reserved) before its pools are requested, becomes
  ``ready`` once the driver made it, and is ``removing`` until driver and IPAM released it;
- an :class:`Endpoint` is stored as ``joining`` with its address before ``driver.join``,
  becomes ``joined`` after, and is ``leaving`` until ``driver.leave`` ran and the address was
  released. Each address is released exactly once: the IPAM driver refuses a second release
  (NotFound), which only recovery of a half-done ``leaving`` step tolerates.

DNS: a network driver with the ``embedded-dns`` capability serves the embedded resolver
(``127.0.0.11`` inside the container's namespace); its protocol is
:class:`dockyard.specs.network.EmbeddedDnsDriver`. The service feeds it the names of every
user-defined network (container name, aliases, 12-character ID, plus the
``dockyard_dns_records`` hook) and attaches one resolver per container that is on at least one
user-defined network; the resolver answers only names of that container's networks.

Events (after the commit): network ``create``, ``destroy``, ``connect``, ``disconnect`` with
attributes ``name`` and ``type`` (driver), plus ``container`` for (dis)connect — as dockerd.

Global scope: on an engine with a cluster store, the networks of a ``global-scope`` driver
(:class:`dockyard.specs.network.GlobalScopeDriver`, the overlay) are cluster-wide. Their pools
come from the IPAM driver's global address space; the driver publishes the definition, and
every engine mirrors the definitions it reports (same ID, scope ``global``) into its own store
without building anything until a container joins. Their embedded DNS records add the
driver's peers (endpoints on other hosts) and are refreshed whenever the driver reports a
change. A container only on such networks gets the resolver of any driver serving the
embedded DNS (the bridge driver's), as dockerd's resolver is the daemon's, not a driver's.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import os
import re
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import Any

from dockyard.errors import (
    Conflict,
    DockyardError,
    DriverNotInstalled,
    Forbidden,
    InvalidArgument,
    NotFound,
)
from dockyard.model import Container, EndpointSettings, IpamPool, Network, new_id
from dockyard.services import Service
from dockyard.services.networks import JOINED, LEAVING, Endpoint, NetworkCreate, NotConnected
from dockyard.specs.network import (
    GLOBAL_SCOPE,
    EmbeddedDnsDriver,
    EndpointRequest,
    EndpointResult,
    GlobalScopeDriver,
    PortMapping,
)
from dockyard.times import parse_until

log = logging.getLogger(__name__)

#: Networks every daemon has: name -> driver (docker's ``none`` uses the ``null`` driver).
BUILTIN: dict[str, str] = {"bridge": "bridge", "host": "host", "none": "null"}
#: Names dockerd refuses for user networks (``runconfig.IsPreDefinedNetwork``).
PREDEFINED = frozenset({"bridge", "host", "none", "default"})
#: Drivers whose networks have no addresses (no IPAM pool) and of which only one may exist.
SINGLETON_DRIVERS = frozenset({"host", "null"})
DEFAULT_BRIDGE_OPTION = "com.docker.network.bridge.default_bridge"
DNS_PORT = 53
#: Docker's local gateway bridge network: made on demand (bridge driver, ICC off, masquerade
#: on) for containers whose networks give them no way out (an overlay's endpoint asks for it,
#: ``EndpointResult.gateway_bridge``); it carries their default route and published ports.
GATEWAY_BRIDGE = "docker_gwbridge"
GATEWAY_BRIDGE_OPTIONS = {"com.docker.network.bridge.enable_icc": "false",
                          "com.docker.network.bridge.enable_ip_masquerade": "true"}

CREATING, READY, REMOVING = "creating", "ready", "removing"






def _netns_inode(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return ""
    return f"{st.st_dev}:{st.st_ino}"


def host_nameservers(path: str = "/etc/resolv.conf") -> list[str]:
    """``nameserver`` lines of the host's resolv.conf (the embedded DNS forwards to them)."""
    out = []
    try:
        text = open(path).read()  # noqa: SIM115 - tiny file
    except OSError:
        return []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            try:
                out.append(str(ipaddress.ip_address(parts[1].split("%")[0])))
            except ValueError:
                continue
    return out




def _created_ts(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()




class NetworkService(Service):
    name = "networks"

    def __init__(self, kernel: Any) -> None:
        super().__init__(kernel)
        self._lock = asyncio.Lock()
        self._dns_attached: dict[str, str] = {}  # container id -> network driver name serving it
        # per-container locks, dropped when no connect or disconnect of the container holds one
        self._container_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._followers: list[asyncio.Task[None]] = []  # one per global-scope driver
        self._gwbridge_lock = asyncio.Lock()

    # ------------------------------------------------------------------ lookups
    def _visible(self, net: Network) -> bool:
        return net.extra.get("state", READY) == READY

    def list(self) -> list[Network]:
        """Every network (built-ins first, then by creation)."""
        return [n for n in self.store.list(Network) if self._visible(n)]

    def get(self, ref: str) -> Network:
        """A network by full ID, name, or unique ID prefix. NotFound: ``network X not found``."""
        ref = ref or ""
        if ref:
            try:
                net = self.store.get(Network, ref)
                if self._visible(net):
                    return net
            except NotFound:
                pass
            net = self.store.by_name(Network, ref)
            if net is not None and self._visible(net):
                return net
            if re.fullmatch(r"[0-9a-f]+", ref):
                found = [n for n in self.store.by_prefix(Network, ref) if self._visible(n)]
                if len(found) == 1:
                    return found[0]
                if len(found) > 1:
                    raise InvalidArgument(f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)")
        if ref in BUILTIN:  # missing because its driver is: say which distribution to install
            self.kernel.driver("network", BUILTIN[ref])
        raise NotFound(f"network {ref} not found")

    def none_is_bare_namespace(self) -> bool:
        """True when there is no ``none`` network because no ``null`` driver is installed. The
        container's own namespace (made with its loopback up) is then all ``--network none``
        means, which is what the null driver gives, and the container has no endpoint."""
        return (self.store.by_name(Network, "none") is None
                and BUILTIN["none"] not in self.kernel.registry.driver_names("network"))

    def endpoints(self, network: Network | str) -> list[Endpoint]:
        """The endpoints (joined or in progress) of a network, oldest first."""
        net_id = network.id if isinstance(network, Network) else self.get(network).id
        return [e for e in self.store.list(Endpoint) if e.network_id == net_id]

    def container_endpoints(self, container_id: str) -> list[Endpoint]:
        return [e for e in self.store.list(Endpoint) if e.container_id == container_id]

    def endpoint(self, container_id: str, network: Network | str) -> Endpoint:
        net = network if isinstance(network, Network) else self.get(network)
        for ep in self.store.list(Endpoint):
            if ep.container_id == container_id and ep.network_id == net.id:
                return ep
        raise NotConnected(f"container {container_id} is not connected to network {net.name}")

    def ports_of(self, container_id: str) -> list[PortMapping]:
        """Host ports the drivers published for the container (all its networks)."""
        return [p for ep in self.container_endpoints(container_id) for p in ep.bound_ports]

    def uses_embedded_dns(self, network: Network | str) -> bool:
        """True when containers on ``network`` get the embedded resolver (127.0.0.11): a
        user-defined network whose driver declares ``embedded-dns``."""
        net = network if isinstance(network, Network) else self.get(network)
        return self._dns_driver_of(net) is not None

    def _dns_driver_of(self, net: Network) -> EmbeddedDnsDriver | None:
        """The driver serving the embedded DNS of ``net`` (the kernel's cached instance; the
        registry checked at load that ``embedded-dns`` drivers implement the protocol), or None
        for a built-in network or a driver without the capability."""
        if net.builtin or _is_gateway_bridge(net):
            return None
        try:
            drv = self.kernel.driver("network", net.driver)
        except DockyardError:
            return None
        if isinstance(drv, GlobalScopeDriver) and not isinstance(drv, EmbeddedDnsDriver):
            return next(iter(self._dns_drivers().values()), None)  # the daemon's resolver
        return drv if isinstance(drv, EmbeddedDnsDriver) else None

    # ------------------------------------------------------------------ create
    async def create(self, req: NetworkCreate) -> Network:
        """Create a network: validate, reserve the name, request IPAM pools, let the driver
        build it, commit, emit ``create``. Returns the stored network."""
        name = req.name or ""
        if not name:
            raise InvalidArgument("network name is required")
        if name in PREDEFINED:
            raise Forbidden(f"operation is not permitted on predefined {name} network ")
        if not name.strip() or "\x00" in name:
            # dockerd (libnetwork's IsValidName) accepts any name that is not blank
            raise InvalidArgument(f"invalid name {name!r} for network")
        return await self._create(req, builtin=False)

    async def _create(self, req: NetworkCreate, builtin: bool) -> Network:
        driver_name = (req.driver or "bridge").strip().lower()
        network_driver = await self.kernel.driver_ready("network", driver_name)
        if req.scope and req.scope != "local" and "global-scope" not in network_driver.info.capabilities:
            raise InvalidArgument(f"driver {driver_name} does not support {req.scope} scope")
        async with self._lock:
            if self.store.by_name(Network, req.name) is not None:
                raise Conflict(f"network with name {req.name} already exists")
            if driver_name in SINGLETON_DRIVERS and any(n.driver == driver_name for n in self.store.list(Network)):
                raise Forbidden(f"only one instance of \"{driver_name}\" network is allowed")
            net = Network(id=new_id(), name=req.name, driver=driver_name, internal=req.internal,
                          attachable=req.attachable, ingress=req.ingress, enable_ipv6=req.enable_ipv6,
                          ipam_driver=req.ipam_driver or "default", ipam_options=dict(req.ipam_options),
                          options=dict(req.options), labels=dict(req.labels), builtin=builtin,
                          scope=req.scope or ("global" if isinstance(network_driver, GlobalScopeDriver)
                                              else "local"))
            net.extra = {"state": CREATING, "pool_ids": []}
            with self.store.transaction() as tx:
                tx.put(net)  # reserves the name; unique per kind
            try:
                if driver_name not in SINGLETON_DRIVERS:
                    await self._request_pools(net, req.ipam_pools,
                                              global_space=isinstance(network_driver, GlobalScopeDriver))
                private = await network_driver.create_network(net)
            except BaseException:
                await self._rollback_create(net)
                raise
            net.extra.update({k: v for k, v in (private or {}).items() if k not in ("state", "pool_ids")})
            net.extra["state"] = READY
            with self.store.transaction() as tx:
                tx.put(net)
        self.kernel.emit("network", "create", net.id, name=net.name, type=net.driver)
        return net

    async def _request_pools(self, net: Network, wanted: list[IpamPool], global_space: bool = False) -> None:
        ipam = await self.kernel.driver_ready("ipam", net.ipam_driver)
        space = ipam.default_address_spaces()[1] if global_space else ""
        # (pool asked for, v6): one automatic IPv4 pool unless one is given, and with
        # EnableIPv6 an automatic IPv6 pool unless one is given
        requests = [(p, not _is_v4(p.subnet)) for p in wanted]
        if not any(not v6 for _p, v6 in requests):
            requests.insert(0, (IpamPool(subnet=""), False))
        if net.enable_ipv6 and not any(v6 for _p, v6 in requests):
            requests.append((IpamPool(subnet=""), True))
        for want, v6 in requests:
            pool = await ipam.request_pool(subnet=want.subnet, ip_range=want.ip_range, gateway=want.gateway,
                                           v6=v6, options=dict(net.ipam_options), address_space=space)
            net.extra["pool_ids"].append(pool.pool_id)
            net.ipam_pools.append(IpamPool(subnet=pool.subnet, gateway=pool.gateway.split("/")[0],
                                           ip_range=want.ip_range, aux_addresses=dict(want.aux_addresses)))
            with self.store.transaction() as tx:  # a crash from here on can release the pool
                tx.put(net)
            for aux in want.aux_addresses.values():
                await ipam.request_address(pool.pool_id, aux)

    async def _release_pools(self, net: Network) -> None:
        if not net.extra.get("pool_ids"):
            return
        ipam = await self.kernel.driver_ready("ipam", net.ipam_driver)
        for pool_id in list(net.extra.get("pool_ids", [])):
            try:
                await ipam.release_pool(pool_id)
            except NotFound:
                pass  # released before a crash
            net.extra["pool_ids"].remove(pool_id)

    async def _rollback_create(self, net: Network) -> None:
        try:
            try:
                drv = await self.kernel.driver_ready("network", net.driver)
                await drv.delete_network(net)
            except NotFound:
                pass
            await self._release_pools(net)
        finally:
            with self.store.transaction() as tx:
                try:
                    tx.delete(Network, net.id)
                except NotFound:
                    pass

    # ------------------------------------------------------------------ remove / prune
    async def remove(self, ref: str) -> Network:
        """Remove a network. Forbidden (403) for built-ins and while endpoints are attached."""
        net = self.get(ref)
        if net.builtin:
            raise Forbidden(f"{net.name} is a pre-defined network and cannot be removed")
        async with self._lock:
            net = self.store.get(Network, net.id)
            if self.endpoints(net):
                raise Forbidden(f"error while removing network: network {net.name} id {net.id} has active endpoints")
            net.extra["state"] = REMOVING
            with self.store.transaction() as tx:
                tx.put(net)
            try:
                drv = await self.kernel.driver_ready("network", net.driver)
                await drv.delete_network(net)
            except BaseException:  # the driver refused or failed: nothing was released, still usable
                net.extra["state"] = READY
                with self.store.transaction() as tx:
                    tx.put(net)
                raise
            await self._finish_remove(net, driver_done=True)
        self.kernel.emit("network", "destroy", net.id, name=net.name, type=net.driver)
        return net

    async def _finish_remove(self, net: Network, driver_done: bool = False) -> None:
        if not driver_done:
            drv = await self.kernel.driver_ready("network", net.driver)
            await drv.delete_network(net)
        await self._release_pools(net)
        for d in self._dns_drivers().values():
            await d.dns_set_records(net.id, {})
        with self.store.transaction() as tx:
            tx.delete(Network, net.id)

    async def prune(self, until: str | None = None, labels: list[str] | None = None,
                    not_labels: list[str] | None = None) -> list[str]:
        """Remove user-defined networks without endpoints, optionally only those created
        before ``until`` and matching every ``labels`` / none of ``not_labels``
        (``key`` or ``key=value``). Returns the removed names."""
        cutoff = parse_until(until) if until else None
        removed = []
        for net in self.list():
            if net.builtin or self.endpoints(net):
                continue
            if cutoff is not None and _created_ts(net.created) >= cutoff:
                continue
            if labels and not all(_label_match(net.labels, x) for x in labels):
                continue
            if not_labels and any(_label_match(net.labels, x) for x in not_labels):
                continue
            try:
                await self.remove(net.id)
            except (Forbidden, NotFound):  # gained an endpoint or vanished meanwhile
                continue
            removed.append(net.name)
        self.kernel.emit("network", "prune", "", reclaimed="0")  # as dockerd (networks reclaim no space)
        return removed

    # ------------------------------------------------------------------ endpoints
    async def connect(self, container: Container, network_name_or_id: str, netns_path: str,
                      aliases: list[str] | None = None, ipv4: str | None = None,
                      ports: list[PortMapping] | None = None, ipv6: str | None = None,
                      mac_address: str = "", dns_servers: list[str] | None = None,
                      driver_opts: dict[str, str] | None = None,
                      link_local_ips: list[str] | None = None) -> EndpointSettings:
        """Attach ``container`` (its namespace at ``netns_path``) to a network: an address from
        the network's IPAM pool (``ipv4`` asks for a given one), ``driver.join``, the endpoint
        persisted, DNS records refreshed, the embedded resolver attached (user-defined
        networks), event ``connect``. ``dns_servers`` are the resolver's upstreams (None: the
        host's resolv.conf). Returns the settings for ``container.networks[network.name]``;
        the caller persists the container."""
        net = self.get(network_name_or_id)
        aliases = [a for a in (aliases or []) if a]
        if aliases and net.builtin:
            raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
        drv = await self.kernel.driver_ready("network", net.driver)
        async with self._container_lock(container.id):
            async with self._lock:  # bookkeeping: the endpoint and its addresses are recorded
                net, ep = await self._reserve_endpoint(container, net, drv, netns_path, aliases, ipv4, ipv6,
                                                       ports, mac_address, dns_servers, link_local_ips)
            # The driver's part runs outside the service lock, so containers of one network
            # join concurrently; the recorded endpoint keeps the network from being removed.
            request = self._request(net, ep, driver_opts)
            try:
                result = await drv.join(request)
            except BaseException:
                async with self._lock:
                    await self._release_addresses(ep)
                    with self.store.transaction() as tx:
                        tx.delete(Endpoint, ep.id)
                raise
            async with self._lock:
                ep.state = JOINED
                ep.mac_address = result.mac_address or ep.mac_address
                if result.ipv4_address:
                    ep.ipv4_address = result.ipv4_address
                if result.ipv6_address:
                    ep.ipv6_address = result.ipv6_address
                ep.gateway = (result.gateway or ep.gateway).split("/")[0]
                ep.bound_ports = list(result.ports)
                ep.result_extra = dict(result.extra)
                ep.gateway_bridge = bool(result.gateway_bridge)
                with self.store.transaction() as tx:
                    tx.put(ep)
                try:
                    await self._refresh_dns(net)
                    await self._attach_dns(container.id)
                except BaseException:  # no half-made endpoint: undo the join, release the address
                    log.exception("embedded DNS for %s failed; undoing the connect", container.name)
                    await self._teardown(ep, net)
                    await self._refresh_dns(net)
                    raise
        self.kernel.emit("network", "connect", net.id, container=container.id, name=net.name, type=net.driver)
        return self.settings(ep, net)

    async def _reserve_endpoint(self, container: Container, net: Network, drv: Any, netns_path: str,
                                aliases: list[str], ipv4: str | None, ipv6: str | None,
                                ports: list[PortMapping] | None, mac_address: str,
                                dns_servers: list[str] | None,
                                link_local_ips: list[str] | None = None) -> tuple[Network, Endpoint]:
        """Check the connect is allowed, pick the interface name, allocate the addresses and
        record the endpoint (state ``joining``). Called under the service lock."""
        net = self.store.get(Network, net.id)
        if ipv6 and not net.enable_ipv6:  # it would never reach the interface
            raise InvalidArgument(f"invalid endpoint settings: {ipv6}: network {net.name} does not have IPv6 "
                                  "enabled (docker network create --ipv6)")
        mine = self.container_endpoints(container.id)
        if any(e.network_id == net.id for e in mine):
            raise Forbidden(f"endpoint with name {container.name} already exists in network {net.name}")
        kinds = {self._driver_of(e.network_id) for e in mine}
        if mine and (net.driver in SINGLETON_DRIVERS or kinds & SINGLETON_DRIVERS):
            raise InvalidArgument(f"container {container.name} cannot be on the host or none network "
                                  "together with other networks")
        used = {e.ifname for e in mine}
        ifname = next(f"eth{i}" for i in range(len(used) + 1) if f"eth{i}" not in used)
        ep = Endpoint(id=new_id(), network_id=net.id, container_id=container.id,
                      container_name=container.name, netns_path=netns_path,
                      netns_inode=_netns_inode(netns_path) if netns_path else "", ifname=ifname,
                      aliases=aliases, ports=list(ports or []), mac_address=mac_address,
                      dns_upstreams=None if dns_servers is None else list(dns_servers),
                      link_local_ips=_link_local(link_local_ips or []))
        v4_pools = [(pid, p) for pid, p in zip(net.extra.get("pool_ids", []), net.ipam_pools, strict=False)
                    if _is_v4(p.subnet)]
        v6_pools = [(pid, p) for pid, p in zip(net.extra.get("pool_ids", []), net.ipam_pools, strict=False)
                    if not _is_v4(p.subnet)]
        if not drv.allocates_addresses and net.driver not in SINGLETON_DRIVERS:
            ipam = await self.kernel.driver_ready("ipam", net.ipam_driver)
            if v4_pools:
                pool_id, pool = _pool_for(v4_pools, ipv4)
                ep.ipv4_address = await ipam.request_address(pool_id, (ipv4 or "").split("/")[0])
                ep.pool_id, ep.gateway = pool_id, pool.gateway
                with self.store.transaction() as tx:  # the address is recorded before anything else
                    tx.put(ep)
            if v6_pools and (ipv6 or net.enable_ipv6):
                pool_id6, _pool6 = _pool_for(v6_pools, ipv6)
                ep.ipv6_address = await ipam.request_address(pool_id6, (ipv6 or "").split("/")[0])
                ep.pool_id6 = pool_id6
        elif ipv4 and drv.allocates_addresses:
            raise InvalidArgument(f"the {net.driver} driver allocates addresses itself; "
                                  "a fixed IPv4 address cannot be requested")
        with self.store.transaction() as tx:
            tx.put(ep)
        return net, ep

    def _container_lock(self, container_id: str) -> asyncio.Lock:
        """Serializes connects and disconnects of one container (they run partly outside the
        service lock)."""
        lock = self._container_locks.get(container_id)
        if lock is None:
            lock = self._container_locks[container_id] = asyncio.Lock()
        return lock

    def settings(self, ep: Endpoint, net: Network | None = None) -> EndpointSettings:
        """The container-side view of an endpoint (``NetworkSettings.Networks.<name>``)."""
        v4 = ep.ipv4_address
        prefix = int(v4.split("/")[1]) if "/" in v4 else 0
        aliases = list(ep.aliases)
        if net is not None and not net.builtin and ep.container_id[:12] not in aliases:
            aliases.append(ep.container_id[:12])
        v6 = ep.ipv6_address
        gw6 = ""
        if v6 and net is not None and ep.pool_id6 in net.extra.get("pool_ids", []):
            pools = net.ipam_pools
            index = net.extra["pool_ids"].index(ep.pool_id6)
            gw6 = pools[index].gateway if index < len(pools) else ""
        return EndpointSettings(network_id=ep.network_id, endpoint_id=ep.id, aliases=aliases,
                                ipv4_address=v4.split("/")[0], ip_prefix_len=prefix, gateway=ep.gateway,
                                ipv6_address=v6.split("/")[0], mac_address=ep.mac_address,
                                ipv6_prefix_len=int(v6.split("/")[1]) if "/" in v6 else 0,
                                ipv6_gateway=gw6.split("/")[0])

    def _driver_of(self, network_id: str) -> str:
        try:
            return self.store.get(Network, network_id).driver
        except NotFound:
            return ""

    def _request(self, net: Network, ep: Endpoint, driver_opts: dict[str, str] | None = None) -> EndpointRequest:
        return EndpointRequest(network=net, container_id=ep.container_id, endpoint_id=ep.id,
                               netns_path=ep.netns_path, ifname=ep.ifname, ipv4_address=ep.ipv4_address,
                               ipv6_address=ep.ipv6_address, gateway=ep.gateway, mac_address=ep.mac_address,
                               aliases=list(ep.aliases), ports=list(ep.ports), options=dict(driver_opts or {}),
                               container_name=ep.container_name, link_local_ips=list(ep.link_local_ips))

    async def _release_addresses(self, ep: Endpoint, tolerate_released: bool = False) -> None:
        if not (ep.pool_id or ep.pool_id6):
            return
        try:
            net = self.store.get(Network, ep.network_id)
        except NotFound:
            return  # the network (and its pools) is gone
        ipam = await self.kernel.driver_ready("ipam", net.ipam_driver)
        for pool_id, address in ((ep.pool_id, ep.ipv4_address), (ep.pool_id6, ep.ipv6_address)):
            if not pool_id or not address:
                continue
            try:
                await ipam.release_address(pool_id, address.split("/")[0])
            except NotFound:
                if not tolerate_released:
                    raise
        ep.pool_id = ep.pool_id6 = ""

    async def disconnect(self, container: Container, network: str, force: bool = False,
                         sandbox_closing: bool = False) -> None:
        """Detach the container from a network: ``driver.leave``, address released, endpoint
        deleted, DNS refreshed, event ``disconnect``. Not connected: NotConnected (500, as
        dockerd), unless ``force``. ``sandbox_closing``: the container's namespace is removed
        next (see :class:`EndpointRequest`)."""
        net = self.get(network)
        async with self._container_lock(container.id):
            async with self._lock:
                try:
                    ep = self.endpoint(container.id, net)
                except NotConnected:
                    if force:
                        return
                    raise
                recovering = self._mark_leaving(ep)
            await self._driver_leave(ep, net, sandbox_closing)  # outside the service lock, as join
            async with self._lock:
                await self._forget(ep, recovering)
                await self._refresh_dns(net)
                await self._attach_dns(container.id)
        self.kernel.emit("network", "disconnect", net.id, container=container.id, name=net.name, type=net.driver)

    async def container_renamed(self, container: Container) -> None:
        """The container got a new name: its endpoints and the DNS records of its networks
        follow (the container service calls this after a rename commits)."""
        async with self._lock:
            nets = []
            for ep in self.container_endpoints(container.id):
                ep.container_name = container.name
                with self.store.transaction() as tx:
                    tx.put(ep)
                try:
                    nets.append(self.store.get(Network, ep.network_id))
                except NotFound:
                    continue
            for net in nets:
                await self._refresh_dns(net)

    async def disconnect_all(self, container: Container, sandbox_closing: bool = False) -> None:
        """Detach the container from every network it has an endpoint on (container stop)."""
        for ep in self.container_endpoints(container.id):
            await self.disconnect(container, ep.network_id, force=True, sandbox_closing=sandbox_closing)

    async def _teardown(self, ep: Endpoint, net: Network, sandbox_closing: bool = False,
                        recovering: bool = False) -> None:
        """``driver.leave``, the addresses released, the endpoint deleted. ``recovering`` (the
        daemon's start-up, or a leave interrupted before) tolerates addresses the IPAM driver
        no longer lists: its state may be older than ours after a power failure."""
        recovering = self._mark_leaving(ep) or recovering
        await self._driver_leave(ep, net, sandbox_closing)
        await self._forget(ep, recovering)

    def _mark_leaving(self, ep: Endpoint) -> bool:
        """Record that the endpoint is being torn down; whether it already was (a leave that a
        crash interrupted, to be finished tolerantly)."""
        was_leaving = ep.state == LEAVING
        ep.state = LEAVING
        with self.store.transaction() as tx:
            tx.put(ep)
        return was_leaving

    async def _driver_leave(self, ep: Endpoint, net: Network, sandbox_closing: bool) -> None:
        drv = await self.kernel.driver_ready("network", net.driver)
        result = EndpointResult(ifname=ep.ifname, mac_address=ep.mac_address, ipv4_address=ep.ipv4_address,
                                ipv6_address=ep.ipv6_address, gateway=ep.gateway, ports=list(ep.bound_ports),
                                extra=dict(ep.result_extra))
        request = self._request(net, ep)
        request.sandbox_closing = sandbox_closing
        await drv.leave(request, result)

    async def _forget(self, ep: Endpoint, recovering: bool) -> None:
        await self._release_addresses(ep, tolerate_released=recovering)
        with self.store.transaction() as tx:
            tx.delete(Endpoint, ep.id)

    # ------------------------------------------------------------------ DNS
    def _dns_drivers(self) -> dict[str, EmbeddedDnsDriver]:
        """Set-up network drivers that serve the embedded DNS, by name."""
        return {n: d for n, d in self.kernel.ready_drivers("network").items() if isinstance(d, EmbeddedDnsDriver)}

    def dns_records(self, net: Network) -> dict[str, list[str]]:
        """name -> addresses on a user-defined network: each joined container's name, aliases
        and 12-character ID, merged with the ``dockyard_dns_records`` hook."""
        records: dict[str, list[str]] = {}
        if net.builtin or _is_gateway_bridge(net):
            return records

        def add(name: str, addresses: list[str]) -> None:
            have = records.setdefault(name.lower(), [])
            have.extend(a for a in addresses if a not in have)

        local_names = set()
        for ep in self.endpoints(net):
            if ep.state != JOINED:
                continue
            addrs = [a.split("/")[0] for a in (ep.ipv4_address, ep.ipv6_address) if a]
            if not addrs:
                continue
            local_names.add(ep.container_name.lower())
            for name in (ep.container_name, *ep.aliases, ep.container_id[:12]):
                if name:
                    add(name, addrs)
        drv = self.kernel.ready_drivers("network").get(net.driver)
        if isinstance(drv, GlobalScopeDriver):  # endpoints on other hosts
            for peer in drv.peers(net.id):
                addrs = [a.split("/")[0] for a in (peer.ipv4_address, peer.ipv6_address) if a]
                # a local container of the same name wins (moved here; the old place expires)
                own = "" if peer.container_name.lower() in local_names else peer.container_name
                for name in (own, *peer.aliases, peer.container_id[:12]):
                    if name and addrs:
                        add(name, addrs)
        for extra in self.kernel.hook.dockyard_dns_records(kernel=self.kernel, network=net):
            for name, addrs in (extra or {}).items():
                add(name, list(addrs))
        return records

    async def _refresh_dns(self, net: Network) -> None:
        """Push the network's records to every DNS-serving driver in use: a container on a
        bridge network and on this one resolves peers of both through its one resolver."""
        if net.builtin:
            return
        records = self.dns_records(net)
        for d in self._dns_drivers().values():
            await d.dns_set_records(net.id, records)

    async def _attach_dns(self, container_id: str) -> None:
        """(Re)attach the container's resolver to its current user-defined networks, or detach
        it when none is left."""
        eps = [e for e in self.container_endpoints(container_id) if e.state == JOINED]
        nets = []
        for e in eps:
            try:
                nets.append(self.store.get(Network, e.network_id))
            except NotFound:
                continue
        user = [n for n in nets if not n.builtin and n.driver not in SINGLETON_DRIVERS
                and not _is_gateway_bridge(n)]
        serving = (self._dns_driver_of(n) for n in user)
        provider = next((d.info.name for d in serving if d is not None), None)
        served_by = self._dns_attached.get(container_id)
        if served_by and served_by != provider:
            old = self._dns_drivers().get(served_by)
            if old is not None:
                await old.dns_detach(container_id)
            self._dns_attached.pop(container_id, None)
        if provider is None:
            return
        await self.kernel.driver_ready("network", provider)
        drv = self._dns_drivers()[provider]
        for n in user:  # records of every network the container is on
            await drv.dns_set_records(n.id, self.dns_records(n))
        ep = next(e for e in eps if e.network_id in {n.id for n in user})
        upstreams = ep.dns_upstreams if ep.dns_upstreams is not None else host_nameservers()
        await drv.dns_attach(container_id, ep.netns_path, [n.id for n in user],
                             [(u, DNS_PORT) for u in upstreams])
        self._dns_attached[container_id] = provider

    def dns_attached(self, container_id: str) -> bool:
        """True while an embedded resolver serves the container (answer at 127.0.0.11)."""
        return container_id in self._dns_attached

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        """Finish or roll back steps a killed daemon left half-done, create the built-in
        networks, restore every network's data plane, reap endpoints whose namespace is gone,
        and re-attach the embedded resolvers."""
        for net in self.store.list(Network):
            state = net.extra.get("state", READY)
            try:
                if state == CREATING:
                    log.info("rolling back the creation of network %s", net.name)
                    await self._rollback_create(net)
                elif state == REMOVING:
                    log.info("finishing the removal of network %s", net.name)
                    await self._finish_remove(net)
            except Exception:  # noqa: BLE001 - one bad network must not stop the daemon
                log.exception("could not recover network %s", net.name)
        for name, driver in BUILTIN.items():
            if self.store.by_name(Network, name) is None:
                opts = {DEFAULT_BRIDGE_OPTION: "true"} if name == "bridge" else {}
                try:
                    await self._create(NetworkCreate(name=name, driver=driver, options=opts), builtin=True)
                except DriverNotInstalled as exc:  # a chosen, smaller install: an error only at use
                    log.info("no built-in %s network: %s", name, exc)
                except DockyardError as exc:
                    log.error("could not create the built-in %s network: %s", name, exc)
        await self._follow_global_networks()
        for net in self.list():
            try:
                drv = await self.kernel.driver_ready("network", net.driver)
                await drv.restore(net)
            except Exception:  # noqa: BLE001
                log.exception("could not restore network %s", net.name)
        containers: set[str] = set()
        for ep in self.store.list(Endpoint):
            try:
                net = self.store.get(Network, ep.network_id)
            except NotFound:
                with self.store.transaction() as tx:
                    tx.delete(Endpoint, ep.id)
                continue
            gone = not ep.netns_path or (ep.netns_inode and _netns_inode(ep.netns_path) != ep.netns_inode)
            if ep.netns_path == "" and net.driver in SINGLETON_DRIVERS:
                gone = False
            try:
                if ep.state != JOINED or gone:
                    log.info("releasing endpoint %s of network %s (%s)", ep.id[:12], net.name,
                             "namespace gone" if gone else ep.state)
                    await self._teardown(ep, net, recovering=True)
                    self.kernel.emit("network", "disconnect", net.id, container=ep.container_id,
                                     name=net.name, type=net.driver)
                else:
                    containers.add(ep.container_id)
            except Exception:  # noqa: BLE001
                log.exception("could not recover endpoint %s", ep.id[:12])
        for net in self.list():
            try:
                await self._refresh_dns(net)
            except Exception:  # noqa: BLE001
                log.exception("could not load DNS records of %s", net.name)
        for cid in containers:
            try:
                await self._attach_dns(cid)
            except Exception:  # noqa: BLE001
                log.exception("could not re-attach the resolver of %s", cid[:12])

    async def stop(self) -> None:
        """Stop the resolvers (their sockets belong to this process) and take down the data
        plane of every network no endpoint uses: a stopped daemon leaves on the host only what
        running containers need (their endpoints and networks stay, for live-restore).
        :meth:`start` brings the rest back (``driver.restore``)."""
        for task in self._followers:
            task.cancel()
        await asyncio.gather(*self._followers, return_exceptions=True)
        self._followers.clear()
        dns_drivers = self._dns_drivers()
        for cid, provider in list(self._dns_attached.items()):
            drv = dns_drivers.get(provider)
            if drv is not None:
                try:
                    await drv.dns_detach(cid)
                except Exception:  # noqa: BLE001
                    log.exception("could not stop the resolver of %s", cid[:12])
        self._dns_attached.clear()
        in_use = {e.network_id for e in self.store.list(Endpoint)}
        ready = self.kernel.ready_drivers("network")
        for net in self.list():
            drv = ready.get(net.driver)
            if net.id in in_use or net.driver in SINGLETON_DRIVERS or drv is None:
                continue
            if isinstance(drv, GlobalScopeDriver):  # cluster-wide: its removal is not a shutdown's
                continue
            try:
                await drv.delete_network(net)
            except Exception:  # noqa: BLE001 - the next start restores it either way
                log.exception("could not take down network %s", net.name)


    # ------------------------------------------------------------------ global scope
    async def _follow_global_networks(self) -> None:
        """With a cluster store: ready every installed global-scope driver, mirror the networks
        it reports, and follow its changes in the background."""
        if not self.kernel.configured_driver_name("cluster"):
            return
        for name in self.kernel.registry.driver_names("network"):
            try:
                cls = self.kernel.registry.load_driver("network", name)
                if GLOBAL_SCOPE not in cls.info.capabilities:
                    continue
                drv = await self.kernel.driver_ready("network", name)
                assert isinstance(drv, GlobalScopeDriver)
                changes = drv.cluster_changes()  # subscribed before the listing: nothing missed
                for net in await drv.cluster_networks():
                    await self._mirror(net)
                known = {n.id for n in await drv.cluster_networks()}
                for net in self.store.list(Network):
                    if net.driver == name and net.id not in known:
                        await self._unmirror(net.id)
            except Exception:  # noqa: BLE001 - the local networks still work
                log.exception("could not follow the cluster's %s networks", name)
                continue
            self._followers.append(asyncio.create_task(self._follow(drv, changes), name=f"follow-{name}"))

    async def _follow(self, drv: GlobalScopeDriver, changes: Any) -> None:
        async for change in changes:
            try:
                if change.kind == "network" and change.network is not None:
                    await self._mirror(change.network)
                elif change.kind == "network":
                    await self._unmirror(change.network_id)
                else:
                    net = self.store.get(Network, change.network_id)
                    async with self._lock:
                        await self._refresh_dns(net)
            except NotFound:
                continue
            except Exception:  # noqa: BLE001
                log.exception("could not apply a cluster change of network %s", change.network_id[:12])

    async def _mirror(self, definition: Network) -> None:
        """Record a network another engine created (same ID), unless it is known here."""
        async with self._lock:
            try:
                self.store.get(Network, definition.id)
                return
            except NotFound:
                pass
            if self.store.by_name(Network, definition.name) is not None:
                log.warning("cluster network %s clashes with a local network's name; not listed here",
                            definition.name)
                return
            net = dataclasses.replace(definition, builtin=False, scope=definition.scope or "global")
            net.extra = {**definition.extra, "state": READY, "mirrored": True}
            with self.store.transaction() as tx:
                tx.put(net)
        self.kernel.emit("network", "create", net.id, name=net.name, type=net.driver)

    async def _unmirror(self, network_id: str) -> None:
        """Forget a network the cluster no longer defines (removed by another engine)."""
        async with self._lock:
            try:
                net = self.store.get(Network, network_id)
            except NotFound:
                return
            if net.extra.get("state", READY) != READY or self.endpoints(net):
                return
            for d in self._dns_drivers().values():
                await d.dns_set_records(net.id, {})
            with self.store.transaction() as tx:
                tx.delete(Network, net.id)
        self.kernel.emit("network", "destroy", net.id, name=net.name, type=net.driver)

    # ------------------------------------------------------------------ docker network connect
    # ------------------------------------------------------------------ gateway bridge
    def _needs_gateway_bridge(self, container_id: str) -> bool:
        """libnetwork's ``needDefaultGW``: some joined endpoint asked for the gateway bridge
        and no other endpoint (non-internal, not host/none) gives the container a gateway."""
        need = False
        for ep in self.container_endpoints(container_id):
            if ep.state != JOINED:
                continue
            try:
                net = self.store.get(Network, ep.network_id)
            except NotFound:
                continue
            if _is_gateway_bridge(net) or net.internal or net.driver in SINGLETON_DRIVERS:
                continue
            if ep.gateway_bridge:
                need = True
            elif ep.gateway:
                return False
        return need

    async def _gateway_bridge_network(self) -> Network:
        """``docker_gwbridge``, created on first use (it stays, as Docker's)."""
        async with self._gwbridge_lock:
            net = self.store.by_name(Network, GATEWAY_BRIDGE)
            if net is not None and self._visible(net):
                return net
            return await self._create(NetworkCreate(name=GATEWAY_BRIDGE, driver="bridge",
                                                    options=dict(GATEWAY_BRIDGE_OPTIONS)), builtin=False)

    async def update_gateway_bridge(self, container: Container, netns_path: str) -> None:
        """Attach the container to the gateway bridge when its endpoints need it (with the
        ports its gateway-needing endpoints were asked to publish), or detach it when they no
        longer do. Called after a start's connects and after a live connect or disconnect."""
        if not netns_path:
            return
        need = self._needs_gateway_bridge(container.id)
        have = [e for e in self.container_endpoints(container.id) if self._on_gateway_bridge(e)]
        if need and not have:
            ports = [p for e in self.container_endpoints(container.id) if e.gateway_bridge for p in e.ports]
            upstream = next((e.dns_upstreams for e in self.container_endpoints(container.id)), None)
            try:
                net = await self._gateway_bridge_network()
            except DockyardError as exc:  # no bridge driver: the overlay's own route stays
                log.warning("no gateway bridge for %s: %s", container.name, exc)
                return
            await self.connect(container, net.id, netns_path, ports=ports, dns_servers=upstream)
        elif have and not need:
            for ep in have:
                await self.disconnect(container, ep.network_id, force=True)

    def _on_gateway_bridge(self, ep: Endpoint) -> bool:
        try:
            return _is_gateway_bridge(self.store.get(Network, ep.network_id))
        except NotFound:
            return False

    async def connect_container(self, container_ref: str, network: str, settings: EndpointSettings) -> None:
        """A running container joins at once (in its namespace: ``ContainerState.sandbox_key``,
        else ``/proc/<pid>/ns/net``); a created or stopped one gets the endpoint configuration
        recorded in ``Container.networks``, used at its next start."""
        net = self.get(network)
        container = self.kernel.containers.get(container_ref)
        wanted = settings
        if wanted.aliases and net.builtin:
            raise InvalidArgument("network-scoped alias is supported only for containers in user defined networks")
        if _shares_a_namespace(container):
            raise InvalidArgument("container sharing network namespace with another container or host cannot be "
                                  "connected to any other network")
        if net.name in container.networks or any(e.network_id == net.id
                                                 for e in self.container_endpoints(container.id)):
            raise Forbidden(f"endpoint with name {container.name} already exists in network {net.name}")
        running = container.state.running and container.state.pid > 0
        # a checkpointed container keeps its sandbox for the restore: it joins there at once
        # (a migration that gave an overlay address up and resumes here takes it back)
        kept = not running and bool(container.state.checkpoint) and bool(container.state.sandbox_key)
        if running or kept:
            netns = container.state.sandbox_key or f"/proc/{container.state.pid}/ns/net"
            joined = await self.connect(container, net.id, netns, aliases=wanted.aliases,
                                        ipv4=wanted.ipv4_address or None, ipv6=wanted.ipv6_address or None,
                                        mac_address=wanted.mac_address,
                                        dns_servers=list(container.host_config.dns) or None,
                                        driver_opts=wanted.driver_opts or None,
                                        link_local_ips=list(wanted.link_local_ips))
            joined.driver_opts = dict(wanted.driver_opts)
            try:
                await self.update_gateway_bridge(container, netns)
            except BaseException:
                await self.disconnect(container, net.id, force=True)
                raise
        else:  # recorded now, attached when the container starts
            joined = dataclasses.replace(wanted, network_id="")
        joined.ipam_ipv4, joined.ipam_ipv6 = wanted.ipam_ipv4, wanted.ipam_ipv6
        joined.link_local_ips = list(wanted.link_local_ips)
        try:
            self._save_container_networks(container.id, lambda nets: nets.__setitem__(net.name, joined))
        except BaseException:
            if running or kept:
                await self.disconnect(container, net.id, force=True)
            raise
        if running and self.uses_embedded_dns(net):
            # dockerd switches a container that joins a user-defined network to the embedded
            # resolver (its resolv.conf becomes 127.0.0.11's)
            from dockyard_engine.container_setup import rewrite_resolv_conf

            fresh = self.store.get(Container, container.id)
            path = self.kernel.config.data_root / "containers" / container.id / "resolv.conf"
            await asyncio.to_thread(rewrite_resolv_conf, path, fresh, self)

    async def disconnect_container(self, container_ref: str, network: str, force: bool = False) -> None:
        net = self.get(network)
        container = self.kernel.containers.get(container_ref)
        has_endpoint = any(e.network_id == net.id for e in self.container_endpoints(container.id))
        if not has_endpoint and net.name not in container.networks:
            # with or without --force, as dockerd (force only helps an endpoint whose
            # container is gone)
            raise NotConnected(f"container {container.id} is not connected to network {net.name}")
        if _shares_a_namespace(container) and not force:
            raise InvalidArgument(f"container cannot be disconnected from network {net.name}: it shares a "
                                  "network namespace")
        if has_endpoint:
            await self.disconnect(container, net.id, force=force)
        self._save_container_networks(container.id, lambda nets: nets.pop(net.name, None))
        if has_endpoint and container.state.running and container.state.pid > 0 and not _is_gateway_bridge(net):
            await self.update_gateway_bridge(container, container.state.sandbox_key
                                             or f"/proc/{container.state.pid}/ns/net")

    def _save_container_networks(self, container_id: str, change: Callable[[dict[str, EndpointSettings]], Any]
                                 ) -> None:
        """Apply ``change`` to the stored container's ``networks`` in one transaction."""
        with self.store.transaction() as tx:
            fresh = self.store.get(Container, container_id)
            change(fresh.networks)
            tx.put(fresh)


def _is_gateway_bridge(net: Network) -> bool:
    return net.name == GATEWAY_BRIDGE and net.driver == "bridge"


def _shares_a_namespace(container: Container) -> bool:
    mode = container.host_config.network_mode or "default"
    return mode == "host" or mode.startswith("container:")


def _link_local(addresses: list[str]) -> list[str]:
    """``--link-local-ip`` values as interface addresses (169.254.0.0/16, fe80::/64)."""
    out = []
    for text in addresses:
        try:
            addr = ipaddress.ip_address(text.split("/")[0])
        except ValueError:
            raise InvalidArgument(f"invalid link-local IP address: {text}") from None
        out.append(text if "/" in text else f"{addr}/{16 if addr.version == 4 else 64}")
    return out


def _is_v4(subnet: str) -> bool:
    try:
        return ipaddress.ip_network(subnet, strict=False).version == 4
    except ValueError:
        return True


def _pool_for(pools: list[tuple[str, IpamPool]], address: str | None) -> tuple[str, IpamPool]:
    if not address:
        return pools[0]
    try:
        addr = ipaddress.ip_address(address.split("/")[0])
    except ValueError as exc:
        raise InvalidArgument(f"invalid address {address!r}") from exc
    for pool_id, pool in pools:
        if addr in ipaddress.ip_network(pool.subnet, strict=False):
            return pool_id, pool
    raise InvalidArgument(f"no configured subnet contains the address {addr}")


def _label_match(labels: dict[str, str], expr: str) -> bool:
    k, sep, v = expr.partition("=")
    return k in labels and (not sep or labels[k] == v)

