"""``DefaultIpam``: dockyard's default IPAM driver (entry point ``dockyard.drivers.ipam:default``).

Settings (a driver option in ``DriverContext.options``, else the daemon config key of the same
name, so docker's ``daemon.json`` ``default-address-pools`` list works as is):

``default-address-pools``
    Comma-separated ``base/len[:size]`` pools automatic IPv4 subnets are cut from (default:
    172.17.0.0/16 whole, then docker's other bases in /24s; see ``pools.DEFAULT_POOLS``).
``default-address-pools-v6``
    The same for IPv6 (default: none, so an IPv6 network needs an explicit subnet).
``check-host-routes``
    ``true`` (default): an automatic subnet overlaps no route or interface address of the host.
``default-global-address-pools``
    The pools automatic subnets of the global address space (``GlobalDefault``, the overlay's)
    are cut from (default ``10.0.0.0/8:24``, Docker's).
``global-address-ttl``
    Seconds an engine's global addresses outlive it when it is lost (its cluster-store lease;
    default: ``discovery.ttl`` of ``--cluster-store-opt``, else 10).

The global address space lives in the cluster store (``context.need(ClusterStore)``; see
:mod:`dockyard_network_ipam.cluster`): available only on an engine started with
``--cluster-store``.

Every pool and address lives in ``<data_dir>/ipam.json``, changed under a file lock and replaced
atomically, so a second instance (a restarted daemon) sees every allocation.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from dockyard.errors import Conflict, InvalidArgument, NotFound, Unavailable
from dockyard.specs import ConfigOption, DriverInfo, IpamDriver
from dockyard.specs.cluster import ClusterStore, discovery_ttl
from dockyard.specs.network import GLOBAL_ADDRESS_SPACE, LOCAL_ADDRESS_SPACE, Pool
from dockyard_network_ipam import pools as P
from dockyard_network_ipam.cluster import DEFAULT_GLOBAL_POOLS, GlobalSpace, is_global
from dockyard_network_ipam.hostnets import host_networks
from dockyard_network_ipam.store import AllocationStore

ADDRESS_SPACE = LOCAL_ADDRESS_SPACE
_TRUE = {"1", "t", "true", "yes", "on"}


def _setting(context: Any, key: str, default: str) -> str:
    """A driver option, else the daemon config key of the same name, else ``default``. The
    daemon config may hold docker's ``daemon.json`` form of the pools: a list of
    ``{"base": "10.0.0.0/8", "size": 24}``."""
    value = context.options.get(key)
    if value is None:
        value = context.daemon_config.get(key)
    if value is None:
        return default
    if isinstance(value, list):
        return ",".join(f"{p['base']}:{p['size']}" if isinstance(p, dict) else str(p) for p in value)
    return str(value)


def _pool_id(subnet: P.IPNetwork, ip_range: P.IPNetwork | None) -> str:
    return f"{ADDRESS_SPACE}/{subnet}" + (f"/{ip_range}" if ip_range else "")


class DefaultIpam(IpamDriver):
    info = DriverInfo(
        name="default", kind="ipam",
        description="Address pools and addresses persisted in the driver's data directory",
        capabilities=frozenset({"ipv6", "persistent", "host-route-check", "global-address-space"}),
    )
    config_options = (
        ConfigOption("default-address-pools", list, None, "pools for new networks: [{base, size}]"),
        ConfigOption("default-address-pools-v6", list, None, "IPv6 pools for new networks"),
        ConfigOption("check-host-routes", bool, True, "never allocate a subnet overlapping host routes"),
        ConfigOption("default-global-address-pools", list, None, "pools of cluster-wide networks: [{base, size}]"),
        ConfigOption("global-address-ttl", int, None, "seconds a lost engine's cluster-wide addresses are kept"),
    )

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._v4_pools = P.parse_pools(_setting(context, "default-address-pools", P.DEFAULT_POOLS), v6=False)
        self._v6_pools = P.parse_pools(_setting(context, "default-address-pools-v6", ""), v6=True)
        self._check_routes = _setting(context, "check-host-routes", "true").lower() in _TRUE
        self._store = AllocationStore(context.data_dir)
        self._lock = asyncio.Lock()
        self._pool_count = 0
        self._global_pools = P.parse_pools(_setting(context, "default-global-address-pools", DEFAULT_GLOBAL_POOLS),
                                           v6=False)
        self._global_ttl = int(_setting(context, "global-address-ttl", discovery_ttl(context.daemon_config, "10")))
        self._global: GlobalSpace | None = None

    async def setup(self) -> None:
        doc = await asyncio.to_thread(self._store.snapshot)
        self._pool_count = len(doc["pools"])
        if self.context.provided.get(ClusterStore) is not None:
            await self._global_space().start()

    async def close(self) -> None:
        if self._global is not None:
            await self._global.close()

    def _global_space(self) -> GlobalSpace:
        """The cluster-wide space (Unavailable without a cluster store)."""
        if self._global is None:
            store = self.context.need(ClusterStore, "the global address space (overlay networks) lives in the "
                                                    "cluster store: start the engine with --cluster-store")
            self._global = GlobalSpace(store, self.context.data_dir, self.context.owner, self._global_pools,
                                       self._global_ttl)
        return self._global

    def status(self) -> list[tuple[str, str]]:
        return [("Pools", str(self._pool_count)),
                ("Default pools", ",".join(f"{p.base}:{p.size}" for p in self._v4_pools))]

    # ---------------------------------------------------------------------------- pools
    async def request_pool(self, subnet: str = "", ip_range: str = "", gateway: str = "",
                           v6: bool = False, options: dict[str, str] | None = None,
                           address_space: str = "") -> Pool:
        if not subnet and (ip_range or gateway):
            raise InvalidArgument("an ip-range or gateway needs an explicit subnet")
        if address_space not in ("", LOCAL_ADDRESS_SPACE, GLOBAL_ADDRESS_SPACE):
            raise InvalidArgument(f"unknown address space {address_space!r}")
        taken_host: list[P.IPNetwork] = []
        if not subnet and self._check_routes:
            taken_host = await asyncio.to_thread(host_networks, v6)
        if address_space == GLOBAL_ADDRESS_SPACE:
            return await self._global_space().request_pool(subnet, ip_range, gateway, v6, taken_host)
        async with self._lock:
            return await asyncio.to_thread(self._request_pool, subnet, ip_range, gateway, v6, taken_host)

    def _request_pool(self, subnet: str, ip_range: str, gateway: str, v6: bool,
                      taken_host: list[P.IPNetwork]) -> Pool:
        with self._store.transaction() as doc:
            existing = [P.parse_network(p["subnet"], "subnet") for p in doc["pools"].values()]
            if subnet:
                net = P.requested_subnet(subnet, v6, existing)
            else:
                net = P.pick_subnet(self._v6_pools if v6 else self._v4_pools, existing + taken_host)
                if net is None:
                    raise Unavailable("could not find an available, non-overlapping IPv"
                                      f"{6 if v6 else 4} address pool among the defaults")
            rng, gw = P.range_and_gateway(net, ip_range, gateway)
            pool_id = _pool_id(net, rng)
            doc["pools"][pool_id] = {
                "subnet": str(net), "ip_range": str(rng) if rng else "", "gateway": str(gw),
                "v6": v6, "allocated": [str(gw)], "last": str(gw),
            }
            self._pool_count = len(doc["pools"])
            return Pool(pool_id=pool_id, subnet=str(net), gateway=str(gw))

    async def release_pool(self, pool_id: str) -> None:
        if is_global(pool_id):
            return await self._global_space().release_pool(pool_id)
        async with self._lock:
            await asyncio.to_thread(self._release_pool, pool_id)

    def _release_pool(self, pool_id: str) -> None:
        with self._store.transaction() as doc:
            if doc["pools"].pop(pool_id, None) is None:
                raise NotFound(f"address pool {pool_id} not found")
            self._pool_count = len(doc["pools"])

    # ---------------------------------------------------------------------------- addresses
    async def request_address(self, pool_id: str, address: str = "") -> str:
        if is_global(pool_id):
            return await self._global_space().request_address(pool_id, address)
        async with self._lock:
            return await asyncio.to_thread(self._request_address, pool_id, address)

    def _request_address(self, pool_id: str, address: str) -> str:
        with self._store.transaction() as doc:
            pool = self._pool(doc, pool_id)
            net = ipaddress.ip_network(pool["subnet"])
            allocated = set(pool["allocated"])
            if address:
                addr = P.parse_address(address, "address")
                if not P.usable(net, addr):
                    raise InvalidArgument(f"address {address} is not a usable address of {net}")
                if str(addr) in allocated:
                    raise Conflict(f"address {addr} is already in use in {net}")
            else:
                rng = ipaddress.ip_network(pool["ip_range"]) if pool["ip_range"] else net
                last = ipaddress.ip_address(pool["last"]) if pool.get("last") else None
                addr = P.next_free(net, rng, allocated, last)
                if addr is None:
                    raise Unavailable(f"no available addresses in pool {pool_id}")
                pool["last"] = str(addr)
            pool["allocated"] = sorted(allocated | {str(addr)}, key=lambda a: int(ipaddress.ip_address(a)))
            return f"{addr}/{net.prefixlen}"

    async def release_address(self, pool_id: str, address: str) -> None:
        if is_global(pool_id):
            return await self._global_space().release_address(pool_id, address)
        async with self._lock:
            await asyncio.to_thread(self._release_address, pool_id, address)

    def _release_address(self, pool_id: str, address: str) -> None:
        with self._store.transaction() as doc:
            pool = self._pool(doc, pool_id)
            addr = str(P.parse_address(address, "address"))
            if addr not in pool["allocated"]:
                raise NotFound(f"address {addr} is not allocated in pool {pool_id}")
            pool["allocated"].remove(addr)

    @staticmethod
    def _pool(doc: dict[str, Any], pool_id: str) -> dict[str, Any]:
        try:
            return doc["pools"][pool_id]
        except KeyError:
            raise NotFound(f"address pool {pool_id} not found") from None
