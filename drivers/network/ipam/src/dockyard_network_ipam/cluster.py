"""The global address space (``GlobalDefault``): pools and addresses in the cluster store, so
every engine sharing it allocates from one set (no address used twice across hosts).

Keys (relative to the store's prefix, values JSON):

``ipam/global/poolset``
    Bumped by every pool change; a pool is added only if it did not change since the pools
    were read (compare-and-swap), so two engines never take overlapping subnets.
``ipam/global/pools/<token>``
    ``{"subnet", "ip_range", "gateway", "v6"}``; ``<token>`` is the pool ID after the space,
    ``/`` written ``~``.
``ipam/global/addresses/<token>/<address>``
    Created only if absent (one transaction each). The gateway's key is permanent; an
    address an engine takes is on that engine's lease (``global-address-ttl`` seconds, kept
    alive while the engine runs), so the addresses of a node that is lost are freed when its
    lease expires. The engine lists what it holds in ``<data_dir>/global.json`` and puts it
    again on a new lease at its next start (a restart, a kill -9), keeping running containers'
    addresses.

Each call is one or a few etcd round trips (about 1 ms on loopback).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, InvalidArgument, LeaseNotFound, NotFound, Unavailable
from dockyard.jsonfile import write_json
from dockyard.specs.cluster import ClusterStore, Compare, Delete, Get, KeptLease, Put
from dockyard.specs.network import GLOBAL_ADDRESS_SPACE, Pool
from dockyard_network_ipam import pools as P

log = logging.getLogger(__name__)

ROOT = "ipam/global/"
POOLSET = ROOT + "poolset"
POOLS = ROOT + "pools/"
ADDRESSES = ROOT + "addresses/"
#: Docker's default for overlay networks: 10.0.0.0/8 cut into /24s.
DEFAULT_GLOBAL_POOLS = "10.0.0.0/8:24"
RACE_RETRIES = 20


def pool_token(pool_id: str) -> str:
    space, _, rest = pool_id.partition("/")
    if space != GLOBAL_ADDRESS_SPACE or not rest:
        raise NotFound(f"address pool {pool_id} not found")
    return rest.replace("/", "~")


def is_global(pool_id: str) -> bool:
    return pool_id.startswith(GLOBAL_ADDRESS_SPACE + "/")


class GlobalSpace:
    """The ``GlobalDefault`` address space over a :class:`ClusterStore`."""

    def __init__(self, store: ClusterStore, data_dir: Path, owner: str, defaults: list[P.DefaultPool],
                 ttl: int = 10) -> None:
        self.store = store
        self.owner = owner
        self.defaults = defaults
        self.ttl = max(2, ttl)
        self._held_path = Path(data_dir) / "global.json"
        self._held: dict[str, list[str]] = {}  # pool id -> addresses this engine took
        self._lease = KeptLease(store, self.ttl, self._republish, name="ipam-global")  # taken at first use
        self._lock = asyncio.Lock()
        self._last: dict[str, str] = {}
        self._pools: dict[str, dict[str, Any]] = {}  # pool id -> its document

    # ------------------------------------------------------------------ life cycle
    async def start(self) -> None:
        """Put the addresses this engine held before it stopped again, on a new lease."""
        try:
            self._held = json.loads(self._held_path.read_text())
        except (FileNotFoundError, ValueError):
            self._held = {}
        if not any(self._held.values()):
            return
        lease = await self._lease.grant()
        for pool_id, addrs in list(self._held.items()):
            for addr in list(addrs):
                key = f"{ADDRESSES}{pool_token(pool_id)}/{addr}"
                if await self.store.get(f"{POOLS}{pool_token(pool_id)}") is None:
                    addrs.remove(addr)  # the network was removed meanwhile
                    continue
                kv = await self.store.get(key)
                if kv is not None and kv.json().get("owner") != self.owner:
                    log.warning("global address %s was taken by %s while this engine was down",
                                addr, kv.json().get("owner"))
                    continue
                await self.store.put(key, self._value(), lease)
        self._save()

    async def close(self) -> None:
        """Stop refreshing the lease. It is not revoked: containers that keep running keep
        their addresses, and the next start takes them over (or they expire with the node)."""
        await self._lease.close()

    def _value(self) -> bytes:
        return json.dumps({"owner": self.owner}).encode()

    def _save(self) -> None:
        write_json(self._held_path, {k: v for k, v in self._held.items() if v})

    async def _republish(self, lease: int) -> None:
        """Every address this engine holds, put again on a new lease (the old one expired)."""
        for pool_id, addrs in list(self._held.items()):
            for addr in list(addrs):
                await self.store.put(f"{ADDRESSES}{pool_token(pool_id)}/{addr}", self._value(), lease)

    # ------------------------------------------------------------------ pools
    async def request_pool(self, subnet: str, ip_range: str, gateway: str, v6: bool,
                           taken_host: list[P.IPNetwork]) -> Pool:
        for _ in range(RACE_RETRIES):
            guard = await self.store.get(POOLSET)
            listing = await self.store.list(POOLS)
            existing = [P.parse_network(kv.json()["subnet"], "subnet") for kv in listing]
            if subnet:
                net = P.requested_subnet(subnet, v6, existing, " in the cluster")
            else:
                if v6:
                    raise InvalidArgument("an IPv6 pool of the global address space needs an explicit subnet")
                picked = P.pick_subnet(self.defaults, existing + taken_host)
                if picked is None:
                    raise Unavailable("could not find an available, non-overlapping address pool "
                                      "for the cluster among the global defaults")
                net = picked
            rng, gw = P.range_and_gateway(net, ip_range, gateway)
            pool_id = f"{GLOBAL_ADDRESS_SPACE}/{net}" + (f"/{rng}" if rng else "")
            token = pool_token(pool_id)
            doc = {"subnet": str(net), "ip_range": str(rng) if rng else "", "gateway": str(gw), "v6": v6}
            result = await self.store.txn(
                [Compare.unchanged(POOLSET, guard.mod_revision if guard else 0)],
                [Put(POOLSET, b"%d" % (int(guard.value or b"0") + 1 if guard else 1)),
                 Put(POOLS + token, json.dumps(doc).encode()),
                 Put(f"{ADDRESSES}{token}/{gw}", json.dumps({"owner": "gateway"}).encode())])
            if result.succeeded:
                return Pool(pool_id=pool_id, subnet=str(net), gateway=str(gw))
        raise Unavailable("could not reserve a pool in the cluster store: too many concurrent changes")

    async def release_pool(self, pool_id: str) -> None:
        token = pool_token(pool_id)
        for _ in range(RACE_RETRIES):
            guard = await self.store.get(POOLSET)
            result = await self.store.txn(
                [Compare.unchanged(POOLSET, guard.mod_revision if guard else 0),
                 Compare(POOLS + token, "create", ">", 0)],
                [Put(POOLSET, b"%d" % (int(guard.value or b"0") + 1 if guard else 1)),
                 Delete(POOLS + token), Delete(f"{ADDRESSES}{token}/", prefix=True)],
                [Get(POOLS + token)])
            if result.succeeded:
                self._held.pop(pool_id, None)
                self._pools.pop(pool_id, None)
                await asyncio.to_thread(self._save)
                return
            if not result.results or not result.results[0]:
                raise NotFound(f"address pool {pool_id} not found")
        raise Unavailable("could not release the pool: too many concurrent changes")

    async def _pool(self, pool_id: str) -> dict[str, Any]:
        """The pool's document (a pool never changes: cached; its removal is seen by the
        transaction that compares its key)."""
        doc = self._pools.get(pool_id)
        if doc is None:
            kv = await self.store.get(POOLS + pool_token(pool_id))
            if kv is None:
                raise NotFound(f"address pool {pool_id} not found")
            doc = self._pools[pool_id] = kv.json()
        return doc

    # ------------------------------------------------------------------ addresses
    async def request_address(self, pool_id: str, address: str) -> str:
        pool = await self._pool(pool_id)
        token = pool_token(pool_id)
        net = ipaddress.ip_network(pool["subnet"])
        lease = await self._lease.grant()
        prefix = f"{ADDRESSES}{token}/"
        rng = ipaddress.ip_network(pool["ip_range"]) if pool["ip_range"] else net
        taken: set[str] | None = None  # first try the address after the last one without listing
        renewed = False
        for _ in range(RACE_RETRIES):
            if address:
                addr = P.parse_address(address, "address")
                if not P.usable(net, addr):
                    raise InvalidArgument(f"address {address} is not a usable address of {net}")
            else:
                last = self._last.get(pool_id)
                picked = P.next_free(net, rng, taken or {pool["gateway"]}, ipaddress.ip_address(last) if last else None)
                if picked is None:
                    raise Unavailable(f"no available addresses in pool {pool_id}")
                addr = picked
            key = f"{prefix}{addr}"
            try:
                result = await self.store.txn([Compare.absent(key), Compare(POOLS + token, "create", ">", 0)],
                                              [Put(key, self._value(), lease)], [Get(POOLS + token)])
            except LeaseNotFound:  # expired before the keepalive saw it: once more, on a new lease
                if renewed:
                    raise
                lease, renewed = await self._lease.renew(lease), True
                continue
            if result.succeeded:
                async with self._lock:
                    self._held.setdefault(pool_id, []).append(str(addr))
                    self._last[pool_id] = str(addr)
                    await asyncio.to_thread(self._save)
                return f"{addr}/{net.prefixlen}"
            if not result.results or not result.results[0]:
                self._pools.pop(pool_id, None)
                raise NotFound(f"address pool {pool_id} not found")
            if address:
                raise Conflict(f"address {addr} is already in use in {net}")
            if taken is None or str(addr) in taken:  # taken by another engine: list what is
                taken = {kv.key[len(prefix):] for kv in await self.store.list(prefix)}
            else:
                taken.add(str(addr))
        raise Unavailable(f"could not allocate an address in {pool_id}: too many concurrent changes")

    async def release_address(self, pool_id: str, address: str) -> None:
        token = pool_token(pool_id)
        addr = str(P.parse_address(address, "address"))
        key = f"{ADDRESSES}{token}/{addr}"
        deleted = await self.store.txn([Compare(key, "create", ">", 0)], [Delete(key)])
        async with self._lock:
            held = self._held.get(pool_id, [])
            if addr in held:
                held.remove(addr)
                await asyncio.to_thread(self._save)
        if not deleted.succeeded:
            raise NotFound(f"address {addr} is not allocated in pool {pool_id}")
