"""Membership: the engines of the pool, as the cluster store knows them.

Every engine of the pool keeps a record under ``nodes/<name>`` on a lease of ``ttl`` seconds and
writes it again every ``interval`` seconds (its heartbeat: :mod:`dockyard_swarm.membership_agent`,
run by ``dockyardd --cluster-store URL --cluster-advertise ADDR:PORT`` or ``dockyard swarm join``).
The record (JSON)::

    {"name", "addr": "ADDR:PORT", "labels": {}, "engine": {Cpus, Memory, ServerVersion,
     KernelVersion, OperatingSystem, Driver, Architecture}, "heartbeat": unix_ts,
     "interval": seconds, "ttl": seconds}

A node whose record was not written again for more than two intervals is *unhealthy* (the
manager judges by when it saw the last write, not by the engine's clock); one whose lease expired
has no record left and is *dropped*. :class:`NodeDirectory`, the manager's ``nodes`` service,
follows the records with one watch and tells subscribers what changed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from dockyard.errors import NotFound, StoreCompacted, StoreUnavailable
from dockyard.services import Service
from dockyard.specs.cluster import Node
from dockyard_swarm.tasks import cancel_all

if TYPE_CHECKING:
    from dockyard.config import Config
    from dockyard.specs.cluster import ClusterStore

log = logging.getLogger("dockyard.swarm.membership")

NODES = "nodes/"
#: Defaults of ``--cluster-store-opt discovery.heartbeat=`` and ``discovery.ttl=`` (seconds):
#: a killed engine is unhealthy after 4 s and dropped after 6 s, so its rescheduling containers
#: run elsewhere within 10 s (dockerd's were 20 and 60).
DEFAULT_HEARTBEAT = 2.0
DEFAULT_TTL = 6.0
#: Missed heartbeats after which a node is unhealthy.
UNHEALTHY_AFTER = 2


def discovery_settings(config: Config) -> tuple[float, float]:
    """``(heartbeat interval, ttl)`` in seconds from the ``cluster-opts`` list
    (``--cluster-store-opt discovery.heartbeat=0.5``). A TTL shorter than two heartbeats, or a
    value that is not a positive number, is an :class:`~dockyard.errors.InvalidArgument`."""
    from dockyard.errors import InvalidArgument

    opts = config.options_for("cluster-opts")
    values = []
    for key, default in (("discovery.heartbeat", DEFAULT_HEARTBEAT), ("discovery.ttl", DEFAULT_TTL)):
        text = opts.get(key)
        try:
            value = float(text.rstrip("s")) if text else default
        except ValueError:
            raise InvalidArgument(f"cluster option {key}={text!r}: expected seconds") from None
        if value <= 0:
            raise InvalidArgument(f"cluster option {key}={text!r}: expected a positive number of seconds")
        values.append(value)
    interval, ttl = values
    if ttl < 2 * interval:
        raise InvalidArgument(f"cluster options: discovery.ttl ({ttl:g}s) must be at least two heartbeats "
                              f"(discovery.heartbeat {interval:g}s)")
    return interval, ttl


def node_key(name: str) -> str:
    return f"{NODES}{name}"


def node_from_record(record: dict[str, Any], healthy: bool = True) -> Node:
    """A scheduler :class:`~dockyard.specs.cluster.Node` from a ``nodes/<name>`` record."""
    engine = dict(record.get("engine") or {})
    return Node(name=str(record["name"]), engine_url=f"tcp://{record['addr']}", id=str(engine.get("ID") or ""),
                labels={str(k): str(v) for k, v in (record.get("labels") or {}).items()},
                cpus=float(engine.get("Cpus") or 0), memory=int(engine.get("Memory") or 0),
                healthy=healthy, storage_driver=str(engine.get("Driver") or ""),
                kernel_version=str(engine.get("KernelVersion") or ""),
                operating_system=str(engine.get("OperatingSystem") or ""),
                os_type=str(engine.get("OSType") or "linux"), architecture=str(engine.get("Architecture") or ""),
                server_version=str(engine.get("ServerVersion") or ""), info=engine,
                platforms=_platforms(engine, False), emulated_platforms=_platforms(engine, True))


def _platforms(engine: dict[str, Any], emulated: bool) -> tuple[str, ...]:
    """The engine's ``Platforms`` (its /info ``DockyardPlatforms``) natively or emulated."""
    out = []
    for item in engine.get("Platforms") or ():
        if isinstance(item, dict) and item.get("Platform") and bool(item.get("Emulated")) is emulated:
            out.append(str(item["Platform"]))
    return tuple(out)


def addr(node: Node) -> str:
    """``ADDR:PORT`` of a node's engine (its advertise address)."""
    return node.engine_url.partition("://")[2] or node.engine_url


@dataclass(frozen=True)
class NodeChange:
    """What happened to a node: ``join`` (a record appeared), ``update`` (its record changed
    other than the heartbeat), ``unhealthy`` (heartbeats missed), ``healthy`` (back in time),
    ``leave`` (its lease expired or it was removed: dropped)."""

    action: Literal["join", "update", "unhealthy", "healthy", "leave"]
    node: Node


@dataclass
class _Entry:
    record: dict[str, Any]
    seen: float  # time.monotonic() of the last write we saw
    healthy: bool = True
    _node: Node | None = None  # built once per record and health (10 us each: 10 ms per 1,000)

    def interval(self) -> float:
        try:
            return float(self.record.get("interval") or DEFAULT_HEARTBEAT)
        except (TypeError, ValueError):
            return DEFAULT_HEARTBEAT

    def set(self, record: dict[str, Any] | None = None, healthy: bool | None = None) -> None:
        if record is not None:
            self.record = record
        if healthy is not None:
            self.healthy = healthy
        self._node = None

    def node(self) -> Node:
        if self._node is None:
            self._node = node_from_record(self.record, self.healthy)
        return self._node


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return {k: v for k, v in a.items() if k != "heartbeat"} == {k: v for k, v in b.items() if k != "heartbeat"}


class NodeDirectory(Service):
    """The manager's ``nodes`` service: every node of the pool, healthy or not, from the store.

    ``nodes()`` and ``node(name)`` answer from a view kept by one watch on ``nodes/`` (listed
    again after a compaction or a lost store); ``changes()`` streams :class:`NodeChange`.
    Dropped nodes are not listed: their containers' records name a node ``node()`` does not
    know, which callers show as on an unhealthy node.
    """

    name = "nodes"

    def __init__(self, kernel: Any) -> None:
        super().__init__(kernel)
        self._entries: dict[str, _Entry] = {}
        self._subscribers: list[asyncio.Queue[NodeChange]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._loaded = asyncio.Event()
        self._sorted: list[Node] | None = None  # nodes(), until something changes
        self._store: ClusterStore | None = None

    async def start(self) -> None:
        self._store = await self.kernel.cluster_store()
        revision = await self._relist()
        self._tasks = [asyncio.create_task(self._follow(revision), name="swarm-nodes-watch"),
                       asyncio.create_task(self._judge(), name="swarm-nodes-health")]

    async def stop(self) -> None:
        await cancel_all(self._tasks)
        self._tasks.clear()

    # ------------------------------------------------------------------ queries
    async def nodes(self) -> list[Node]:
        """Every node with a record, sorted by name; ``healthy`` False when heartbeats are late
        (judged every half interval). The Node objects are shared and rebuilt only when a
        record or a health changes: read them, copy before changing one."""
        if self._sorted is None:
            self._sorted = [self._entries[n].node() for n in sorted(self._entries)]
        return list(self._sorted)

    async def node(self, name: str) -> Node:
        """The node ``name``; :class:`~dockyard.errors.NotFound` when it has no record (never
        joined, or dropped)."""
        entry = self._entries.get(name)
        if entry is None:
            raise NotFound(f"node {name} not found in the cluster")
        return entry.node()

    async def changes(self) -> AsyncIterator[NodeChange]:
        """Every change from now on, until the caller stops iterating."""
        queue: asyncio.Queue[NodeChange] = asyncio.Queue()
        self._subscribers.append(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.remove(queue)

    # ------------------------------------------------------------------ the view
    def _publish(self, action: Literal["join", "update", "unhealthy", "healthy", "leave"], node: Node) -> None:
        self._sorted = None
        log.info("node %s: %s", node.name, action)
        for queue in self._subscribers:
            queue.put_nowait(NodeChange(action, node))

    def _apply_put(self, name: str, record: dict[str, Any]) -> None:
        now = time.monotonic()
        entry = self._entries.get(name)
        if entry is None:
            self._entries[name] = entry = _Entry(record, now)
            self._publish("join", entry.node())
            return
        changed = not _same(entry.record, record)
        entry.seen = now
        if changed:
            entry.set(record=record)
        else:
            entry.record = record  # the heartbeat's time only: the Node is the same
        if not entry.healthy:
            entry.set(healthy=True)
            self._publish("healthy", entry.node())
        elif changed:
            self._publish("update", entry.node())

    def _apply_delete(self, name: str) -> None:
        entry = self._entries.pop(name, None)
        if entry is not None:
            entry.set(healthy=False)
            self._publish("leave", entry.node())

    async def _relist(self) -> int:
        assert self._store is not None
        listing = await self._store.list(NODES)
        present: dict[str, dict[str, Any]] = {}
        for kv in listing:
            try:
                record = kv.json()
            except ValueError:
                log.warning("node record %s is not JSON: ignored", kv.key)
                continue
            present[kv.key[len(NODES):]] = record
        for name in [n for n in self._entries if n not in present]:
            self._apply_delete(name)
        for name, record in present.items():
            self._apply_put(name, record)
        self._loaded.set()
        return listing.revision

    async def _follow(self, revision: int) -> None:
        assert self._store is not None
        while True:
            try:
                async for event in self._store.watch(NODES, revision + 1):
                    revision = event.revision
                    name = event.key[len(NODES):]
                    if event.type == "delete":
                        self._apply_delete(name)
                        continue
                    try:
                        self._apply_put(name, event.kv.json())
                    except ValueError:
                        log.warning("node record %s is not JSON: ignored", event.key)
            except StoreCompacted:
                revision = await self._relist_retrying()
            except StoreUnavailable as exc:
                log.warning("cluster store unavailable, watching nodes again: %s", exc)
                await asyncio.sleep(1)
                revision = await self._relist_retrying()

    async def _relist_retrying(self) -> int:
        while True:
            try:
                return await self._relist()
            except StoreUnavailable as exc:
                log.warning("cluster store unavailable, listing nodes again in 1 s: %s", exc)
                await asyncio.sleep(1)

    def _check_health(self) -> None:
        now = time.monotonic()
        for entry in self._entries.values():
            late = now - entry.seen > UNHEALTHY_AFTER * entry.interval()
            if late and entry.healthy:
                entry.set(healthy=False)
                self._publish("unhealthy", entry.node())

    async def _judge(self) -> None:
        while True:
            self._check_health()
            shortest = min((e.interval() for e in self._entries.values()), default=DEFAULT_HEARTBEAT)
            await asyncio.sleep(max(0.1, shortest / 2))


def encode(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True).encode()
