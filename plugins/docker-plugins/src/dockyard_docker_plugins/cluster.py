"""Global-scope networks of Docker plugins, kept in the cluster store (Docker's classic
``--cluster-store`` mode).

libnetwork stores a network of a remote driver whose ``GetCapabilities`` says ``"Scope":
"global"`` in the cluster's key-value store: every engine sharing the store lists it, its
endpoints are known cluster-wide, and the driver hears of the engines (nodes) through
``DiscoverNew``/``DiscoverDelete``. One :class:`ClusterView` per kernel holds that state for every
plugin, shared by the adapters of global plugins and by the catalog driver that lets the network
service mirror the networks (:mod:`dockyard_docker_plugins.catalog`). Drivers get it through
their context (``dockyard_provides``), and the view gets the store the same way
(``context.need(ClusterStore)``): nothing here knows which store driver serves it.

Keys (relative to the store's prefix, JSON values):

``docker-plugins/networks/<network id>``
    ``{"network": <the Network every engine lists>}``, written once by the engine that creates
    it, in one transaction with ``docker-plugins/names/<name>`` (a name is the cluster's).
``docker-plugins/endpoints/<network id>/<endpoint id>``
    ``{"container_id", "name", "aliases", "ipv4", "ipv6", "mac", "node"}`` on the engine's lease:
    a lost engine's endpoints go with it.
``docker-plugins/nodes/<address>``
    ``{}`` on the engine's lease: the engines global plugins are told of (``--cluster-advertise``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import ipaddress
import json
import logging
import socket
import struct
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

from dockyard.errors import Conflict, Forbidden, InvalidArgument
from dockyard.model import Network, from_dict, to_dict
from dockyard.specs.cluster import (
    ClusterStore,
    Compare,
    Delete,
    Get,
    KeptLease,
    Listing,
    Put,
    WatchEvent,
    follow,
)
from dockyard.specs.network import (
    ChangeSubscription,
    ClusterNetworkChange,
    ClusterNetworkRecords,
    PeerEndpoint,
)

log = logging.getLogger(__name__)

ROOT = "docker-plugins/"
NETWORKS = ROOT + "networks/"
NAMES = ROOT + "names/"
ENDPOINTS = ROOT + "endpoints/"
NODES = ROOT + "nodes/"
SIOCGIFADDR = 0x8915


def advertise_address(value: str) -> str:
    """The address part of ``--cluster-advertise`` (``ADDR:PORT`` or ``IFACE:PORT``, as dockerd
    takes it): an interface name becomes its IPv4 address. ``""`` for ``""``."""
    host = value.strip().rpartition(":")[0] if ":" in value else value.strip()
    host = host.strip("[]")
    if not host:
        return ""
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            packed = fcntl.ioctl(sock.fileno(), SIOCGIFADDR, struct.pack("256s", host[:15].encode()))
        except OSError as exc:
            raise InvalidArgument(f"cluster-advertise: interface {host!r} has no IPv4 address "
                                  f"({exc.strerror})") from None
    return socket.inet_ntoa(packed[20:24])


@dataclass(frozen=True)
class NodeChange:
    """An engine joined (``present``) or left the cluster's set of nodes."""

    address: str
    present: bool


class ClusterView:
    """This engine's view of the plugins' global networks, endpoints and nodes: a cache of
    ``docker-plugins/`` kept current by one watch, and the writes that change it.

    Started by the first driver that needs it (:meth:`start`, idempotent) and stopped when the
    last one closes (:meth:`release`). Like the overlay, a stop leaves this engine's records on
    its lease until it expires: running containers keep their endpoints (live-restore), and a
    restarted engine publishes them again."""

    def __init__(self) -> None:
        self.store: ClusterStore | None = None
        self.node = ""  # this engine's advertised address ("" without --cluster-advertise)
        self._lease: KeptLease | None = None
        self._users = 0
        self._lock = asyncio.Lock()
        self._records = ClusterNetworkRecords(ROOT, lambda doc: doc.get("node") == self.node)
        self._defs = self._records.defs  # network id -> definition document
        self._endpoints = self._records.endpoints  # network id -> endpoint id -> doc (other engines')
        self._nodes: set[str] = set()
        self._mine: dict[str, bytes] = {}  # keys on this engine's lease, put again on a new lease
        self._changes: set[asyncio.Queue[Any]] = set()
        self._node_changes: set[asyncio.Queue[Any]] = set()
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ life cycle
    async def start(self, store: ClusterStore, node: str, ttl: int) -> None:
        """Take a lease, register this node, list ``docker-plugins/`` and watch it (once; later
        calls only count another user)."""
        async with self._lock:
            self._users += 1
            if self.store is not None:
                return
            self.store, self.node = store, node
            self._lease = KeptLease(store, ttl, self._republish, name="docker-plugins")
            try:
                await self._lease.grant()
                if node:
                    await self._put(NODES + node, b"{}")
                listing = await store.list(ROOT)
            except BaseException:
                await self._lease.close()
                self.store, self._users, self._lease = None, self._users - 1, None
                raise
            for kv in listing:
                self._load(WatchEvent("put", kv))
            self._tasks = [asyncio.create_task(follow(store, ROOT, listing.revision + 1, self._on_event, self._resync,
                                                   name="docker-plugins"), name="docker-plugins-watch")]

    async def release(self) -> None:
        """One user fewer; the last stops the watch and the lease's refresh."""
        async with self._lock:
            self._users = max(0, self._users - 1)
            if self._users or self.store is None:
                return
            tasks, self._tasks = self._tasks, []
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            if self._lease is not None:
                await self._lease.close()
            for q in list(self._changes | self._node_changes):
                q.put_nowait(None)
            self.store = None

    @property
    def started(self) -> bool:
        return self.store is not None

    def _need(self) -> ClusterStore:
        if self.store is None:
            raise InvalidArgument("global-scope plugin networks need the cluster store "
                                  "(--cluster-store etcd://HOST:PORT/PREFIX)")
        return self.store

    # ------------------------------------------------------------------ reading
    def definitions(self) -> list[Network]:
        return [n for n in (self.definition(i) for i in sorted(self._defs)) if n is not None]

    def definition(self, network_id: str) -> Network | None:
        doc = self._defs.get(network_id)
        if doc is None:
            return None
        net = from_dict(Network, doc["network"])
        net.scope = "global"
        return net

    def nodes(self) -> list[str]:
        return sorted(self._nodes)

    def peers(self, network_id: str) -> list[PeerEndpoint]:
        """Endpoints of ``network_id`` on other engines (a container name two of them hold is
        given to the newest, as the overlay does)."""
        items = sorted(self._endpoints.get(network_id, {}).items())
        newest: dict[str, int] = {}
        for _eid, d in items:
            if d.get("name"):
                newest[d["name"]] = max(newest.get(d["name"], 0), int(d.get("rev", 0)))
        return [PeerEndpoint(endpoint_id=eid, container_id=str(d.get("container_id", "")),
                             container_name=str(d.get("name", "")) if int(d.get("rev", 0)) == newest.get(d.get("name"))
                             else "",
                             host=str(d.get("node", "")), ipv4_address=str(d.get("ipv4", "")),
                             ipv6_address=str(d.get("ipv6", "")), mac_address=str(d.get("mac", "")),
                             aliases=tuple(d.get("aliases") or ()))
                for eid, d in items]

    def changes(self, first: Iterable[ClusterNetworkChange] = ()) -> AsyncIterator[ClusterNetworkChange]:
        """Definitions added or removed, and peers changed, from now on (after ``first``)."""
        return ChangeSubscription[ClusterNetworkChange](self._changes, first)

    def node_changes(self) -> AsyncIterator[NodeChange]:
        """Engines joining and leaving, from now on."""
        return ChangeSubscription[NodeChange](self._node_changes)

    # ------------------------------------------------------------------ writing
    async def publish_network(self, network: Network) -> None:
        """Put the definition and claim its name in one transaction; Conflict when another
        engine's network holds the name."""
        store = self._need()
        definition = to_dict(network)
        definition["scope"] = "global"
        definition["extra"] = {"pool_ids": list(network.extra.get("pool_ids", []))}
        key, name_key = NETWORKS + network.id, NAMES + network.name
        result = await store.txn([Compare.absent(key), Compare.absent(name_key)],
                                 [Put(key, json.dumps({"network": definition}).encode()),
                                  Put(name_key, network.id.encode())], [Get(name_key)])
        if not result.succeeded:
            raise Conflict(f"network with name {network.name} already exists in the cluster")
        self._defs[network.id] = {"network": definition}

    async def remote_endpoint_nodes(self, network_id: str) -> list[str]:
        """The other engines with endpoints on the network, read from the store (not the cache:
        a removal must not race a join elsewhere)."""
        store = self._need()
        return sorted({str(kv.json().get("node") or "?") for kv in await store.list(f"{ENDPOINTS}{network_id}/")
                       if kv.json().get("node") != self.node})

    async def remove_network(self, network: Network) -> None:
        """Delete the definition, its endpoints' records and its name; Forbidden while another
        engine has an endpoint on it."""
        store = self._need()
        others = await self.remote_endpoint_nodes(network.id)
        if others:
            raise Forbidden(f"network {network.name} has active endpoints on other hosts ({', '.join(others)})")
        ops: list[Any] = [Delete(NETWORKS + network.id), Delete(f"{ENDPOINTS}{network.id}/", prefix=True)]
        named = await store.get(NAMES + network.name)
        if named is not None and named.value.decode() == network.id:
            ops.append(Delete(NAMES + network.name))
        await store.txn([], ops)
        self._defs.pop(network.id, None)

    async def publish_endpoint(self, network_id: str, endpoint_id: str, doc: dict[str, Any]) -> None:
        await self._put(f"{ENDPOINTS}{network_id}/{endpoint_id}", json.dumps({**doc, "node": self.node}).encode())

    async def unpublish_endpoint(self, network_id: str, endpoint_id: str) -> None:
        key = f"{ENDPOINTS}{network_id}/{endpoint_id}"
        self._mine.pop(key, None)
        await self._need().delete(key)

    async def _put(self, key: str, value: bytes) -> None:
        self._need()
        assert self._lease is not None
        self._mine[key] = value
        await self._lease.put(key, value, lambda: self._mine.get(key) == value)

    async def _republish(self, lease: int) -> None:
        """This engine's records, put again on a new lease (the old one expired)."""
        for key, value in list(self._mine.items()):
            await self._need().put(key, value, lease)

    # ------------------------------------------------------------------ the watch
    def _load(self, ev: WatchEvent) -> ClusterNetworkChange | NodeChange | None:
        """Apply one key change to the caches; the change to announce, if any."""
        change = self._records.apply(ev)
        if change is not None:
            kind, net_id = change
            return ClusterNetworkChange(kind, net_id, self.definition(net_id) if kind == "network" else None)
        key = ev.key
        if key.startswith(NODES):
            address = key[len(NODES):]
            if address == self.node:
                return None
            present = ev.type == "put"
            if present == (address in self._nodes):
                return None
            (self._nodes.add if present else self._nodes.discard)(address)
            return NodeChange(address, present)
        return None

    def _announce(self, change: ClusterNetworkChange | NodeChange | None) -> None:
        if change is None:
            return
        for q in list(self._node_changes if isinstance(change, NodeChange) else self._changes):
            q.put_nowait(change)

    async def _on_event(self, ev: WatchEvent) -> None:
        self._announce(self._load(ev))

    async def _resync(self, listing: Listing) -> None:
        """After a compaction: load the listing afresh and announce what differs."""
        old_nodes, self._nodes = set(self._nodes), set()
        changed, old_eps = self._records.reload(listing)
        for kv in listing:
            if kv.key.startswith(NODES):
                self._load(WatchEvent("put", kv))
        for net_id in changed:
            self._announce(ClusterNetworkChange("network", net_id, self.definition(net_id)))
        for net_id in set(old_eps) | set(self._endpoints):
            if old_eps.get(net_id) != self._endpoints.get(net_id):
                self._announce(ClusterNetworkChange("peers", net_id))
        for address in old_nodes ^ self._nodes:
            self._announce(NodeChange(address, address in self._nodes))
