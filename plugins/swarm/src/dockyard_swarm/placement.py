"""Placement on the manager: what a create asks of a node, the nodes as the scheduler sees them,
and the etcd transaction that reserves a node (Swarm classic's "pending" container).

The transaction (:meth:`Reservations.reserve`) is what makes racing managers safe: it creates
``names/<name>`` only if absent (no name placed twice), compares ``reservations/<node>``'s
revision with the one the placement was computed from and writes the new totals (a node is
never promised beyond what the placement checked, whichever manager wrote last), and records
the pending container under ``containers/<pending id>``. A lost race on the reservation places
again with fresh totals; a taken name is a 409 as dockerd's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dockyard import errors as e
from dockyard.specs.cluster import ClusterStore, Compare, Delete, Listing, Put, WatchEvent, follow
from dockyard_swarm.tasks import cancel_all

log = logging.getLogger(__name__)

NAMES, CONTAINERS, RESERVATIONS = "names/", "containers/", "reservations/"
#: ``containers/<PENDING><hex>``: a placement whose create has not been recorded under its ID yet.
PENDING = "pending-"


@dataclass
class Reservation:
    """``reservations/<node>`` as last read: totals promised and the key's revision."""

    cpus: float = 0.0
    memory: int = 0
    containers: int = 0
    mod_revision: int = 0

    def encode(self) -> bytes:
        return json.dumps({"cpus": round(self.cpus, 6), "memory": self.memory,
                           "containers": self.containers}).encode()


@dataclass
class Pending:
    """A reservation the transaction made, until the node answers."""

    node: str
    name: str
    pending_id: str
    cpus: float
    memory: int
    record: dict[str, Any] = field(default_factory=dict)


class Reservations:
    """The ``reservations/`` view, kept by one watch, and the placement transactions."""

    def __init__(self, store: ClusterStore) -> None:
        self.store = store
        self.by_node: dict[str, Reservation] = {}
        self._task: asyncio.Task[None] | None = None
        #: called with a node's name when its reservation changed (the placement view's mark)
        self.on_change: Any = None

    async def start(self) -> None:
        listing = await self.store.list(RESERVATIONS)
        for kv in listing:
            self._apply(kv.key[len(RESERVATIONS):], kv.value, kv.mod_revision)
        self._task = asyncio.create_task(follow(self.store, RESERVATIONS, listing.revision + 1, self._on_event,
                                                 self._relist, name="swarm reservations", pause=1.0),
                                          name="swarm-reservations-watch")

    async def stop(self) -> None:
        await cancel_all([self._task])
        self._task = None

    def _apply(self, node: str, value: bytes, rev: int) -> None:
        cur = self.by_node.get(node)
        if cur is not None and cur.mod_revision >= rev:
            return
        if self.on_change is not None:
            self.on_change(node)
        if not value:
            self.by_node.pop(node, None)
            return
        try:
            doc = json.loads(value)
        except ValueError:
            return
        self.by_node[node] = Reservation(float(doc.get("cpus") or 0), int(doc.get("memory") or 0),
                                         int(doc.get("containers") or 0), rev)

    async def _on_event(self, ev: WatchEvent) -> None:
        node = ev.key[len(RESERVATIONS):]
        if ev.type == "delete":
            self.by_node.pop(node, None)
            if self.on_change is not None:
                self.on_change(node)
        else:
            self._apply(node, ev.kv.value, ev.kv.mod_revision)

    async def _relist(self, listing: Listing) -> None:
        """After a compaction: the listing replaces the view."""
        self.by_node.clear()
        for kv in listing:
            self._apply(kv.key[len(RESERVATIONS):], kv.value, kv.mod_revision)

    async def reread(self, node: str) -> Reservation:
        kv = await self.store.get(RESERVATIONS + node)
        if kv is None:
            self.by_node.pop(node, None)
            return Reservation()
        self._apply(node, kv.value, kv.mod_revision)
        return self.by_node.get(node, Reservation())

    async def reserve(self, node: str, name: str, cpus: float, memory: int,
                      record: dict[str, Any]) -> Pending:
        """One transaction: ``names/<name>`` if absent, ``reservations/<node>`` if unchanged
        since read, the pending record. Raises :class:`~dockyard.errors.Conflict` for a taken
        name and :class:`~dockyard.errors.TxnFailed` when the node's reservation moved."""
        cur = self.by_node.get(node, Reservation())
        new = Reservation(cur.cpus + cpus, cur.memory + memory, cur.containers + 1)
        pending_id = PENDING + secrets.token_hex(8)
        rec = dict(record, id=pending_id, node=node, name=name, pending=True)
        res = await self.store.txn(
            [Compare.absent(NAMES + name), Compare.unchanged(RESERVATIONS + node, cur.mod_revision)],
            [Put(NAMES + name, pending_id.encode()), Put(RESERVATIONS + node, new.encode()),
             Put(CONTAINERS + pending_id, json.dumps(rec).encode())])
        if not res.succeeded:
            owner = await self.store.get(NAMES + name)
            if owner is not None:
                raise e.Conflict(f'Conflict. The container name "/{name}" is already in use by container '
                                 f'"{owner.value.decode()}". You have to remove (or rename) that container '
                                 "to be able to reuse that name.")
            await self.reread(node)
            raise e.TxnFailed(f"reservation of node {node} changed")
        new.mod_revision = res.revision
        self._apply(node, new.encode(), res.revision)
        return Pending(node, name, pending_id, cpus, memory, rec)

    async def confirm(self, pending: Pending, cid: str) -> dict[str, Any]:
        """The node created it: ``containers/<id>``, ``names/<name>`` -> id, pending gone."""
        rec = dict(pending.record, id=cid)
        rec.pop("pending", None)
        await self.store.txn([], [Put(CONTAINERS + cid, json.dumps(rec).encode()),
                                  Put(NAMES + pending.name, cid.encode()),
                                  Delete(CONTAINERS + pending.pending_id)])
        return rec

    async def release(self, node: str, name: str, owner: str, cpus: float, memory: int,
                      record_id: str = "") -> None:
        """Undo a reservation (a failed create, a removed container): the name if ``owner``
        still holds it, the record, and the node's totals by compare-and-swap."""
        ops = [Delete(CONTAINERS + (record_id or owner))]
        await self.store.txn([Compare.value_is(NAMES + name, owner.encode())], [Delete(NAMES + name), *ops], ops)
        await self.give_back(node, name, cpus, memory)

    async def settle(self, record: dict[str, Any], revision: int, cid: str) -> bool:
        """A pending record (``containers/<pending id>`` at ``revision``) settled once: with
        ``cid`` (the node's container of its name), recorded as :meth:`confirm` does; without,
        the record and the name it holds removed and the node's totals given back. False when
        the record moved meanwhile (another sweep settled it: nothing is done twice)."""
        pending_id, name, node = str(record["id"]), str(record.get("name") or ""), str(record.get("node") or "")
        holds = [Compare.unchanged(CONTAINERS + pending_id, revision),
                 Compare.value_is(NAMES + name, pending_id.encode())]
        if cid:
            rec = dict(record, id=cid)
            rec.pop("pending", None)
            res = await self.store.txn(holds, [Put(CONTAINERS + cid, json.dumps(rec).encode()),
                                               Put(NAMES + name, cid.encode()), Delete(CONTAINERS + pending_id)])
            return res.succeeded
        res = await self.store.txn(holds, [Delete(NAMES + name), Delete(CONTAINERS + pending_id)])
        if not res.succeeded:  # the name is another's now: the record alone
            res = await self.store.txn(holds[:1], [Delete(CONTAINERS + pending_id)])
        if res.succeeded:
            await self.give_back(node, name, float(record.get("cpus") or 0), int(record.get("memory") or 0))
        return res.succeeded

    async def give_back(self, node: str, name: str, cpus: float, memory: int) -> None:
        """The node's totals less one container's, by compare-and-swap."""
        for _ in range(20):
            cur = await self.reread(node)
            new = Reservation(max(0.0, cur.cpus - cpus), max(0, cur.memory - memory), max(0, cur.containers - 1))
            res = await self.store.txn([Compare.unchanged(RESERVATIONS + node, cur.mod_revision)],
                                       [Put(RESERVATIONS + node, new.encode())])
            if res.succeeded:
                self._apply(node, new.encode(), res.revision)
                return
            await asyncio.sleep(random.uniform(0, 0.01))
        log.warning("could not release the reservation of %s on node %s (kept racing)", name, node)

    async def adjust(self, cid: str, edit: Callable[[dict[str, Any]], dict[str, Any]],
                     check: Callable[[Reservation, Reservation], str | None] | None = None,
                     ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Change ``containers/<cid>`` and its node's totals together, in one transaction:
        ``edit(record)`` gives the new record, and ``reservations/<node>`` moves by the
        difference of the records' ``cpus`` and ``memory``. When either grows, ``check(now,
        then)`` (the node's totals before and after) may refuse with a message: a
        :class:`~dockyard.errors.Conflict`, nothing changed. Both keys are compared with the
        revisions read, so a race (another placement on the node, a rename) reads them again.
        Returns ``(old, new)`` records, or None when the container has no record (made on its
        node directly: it reserved nothing)."""
        for attempt in range(20):
            kv = await self.store.get(CONTAINERS + cid)
            if kv is None:
                return None
            old = kv.json()
            new = edit(dict(old))
            node = str(old.get("node") or "")
            cpus = float(new.get("cpus") or 0) - float(old.get("cpus") or 0)
            memory = int(new.get("memory") or 0) - int(old.get("memory") or 0)
            compares = [Compare.unchanged(CONTAINERS + cid, kv.mod_revision)]
            ops: list[Any] = [Put(CONTAINERS + cid, json.dumps(new).encode())]
            then = None
            if cpus or memory:
                now = self.by_node.get(node, Reservation()) if attempt == 0 else await self.reread(node)
                then = Reservation(max(0.0, now.cpus + cpus), max(0, now.memory + memory), now.containers)
                why = check(now, then) if check is not None and (cpus > 0 or memory > 0) else None
                if why:
                    raise e.Conflict(why)
                compares.append(Compare.unchanged(RESERVATIONS + node, now.mod_revision))
                ops.append(Put(RESERVATIONS + node, then.encode()))
            res = await self.store.txn(compares, ops)
            if res.succeeded:
                if then is not None:
                    self._apply(node, then.encode(), res.revision)
                return old, new
            await asyncio.sleep(random.uniform(0, 0.01) * attempt)
        raise e.Unavailable(f"could not change the reservation of container {cid}: the node's reservation kept "
                            "changing (20 attempts)")


# dockerd's names are adjective_scientist; ours are drawn from shorter lists (the manager names
# a container before any node sees it, so the name is reserved in the same transaction)
_LEFT = ("admiring", "brave", "calm", "clever", "eager", "elegant", "focused", "gallant", "happy", "jolly",
         "keen", "lucid", "modest", "nifty", "quirky", "serene", "sharp", "stoic", "tender", "vibrant",
         "wizardly", "zealous", "bold", "cool", "dreamy", "fervent", "gifted", "hungry", "kind", "loving")
_RIGHT = ("albattani", "babbage", "curie", "darwin", "euclid", "fermi", "galileo", "hopper", "hypatia",
          "johnson", "kepler", "lovelace", "meitner", "newton", "noether", "pascal", "ritchie", "shannon",
          "tesla", "turing", "wozniak", "yonath", "archimedes", "bohr", "dijkstra", "einstein", "feynman",
          "goodall", "hawking", "lamport")


def random_name(attempt: int = 0) -> str:
    """``adjective_scientist`` and a number (9 million names: a retry on a clash is rare)."""
    return f"{random.choice(_LEFT)}_{random.choice(_RIGHT)}{random.randint(0, 9999 if attempt < 2 else 999999)}"


def now() -> float:
    return time.time()


class PlacementView:
    """Core's :class:`~dockyard.scheduler.Scheduler`, kept in step with the cluster instead of
    rebuilt for every create: nodes the membership reports changed, nodes whose reservation
    changed in the store (any manager's placements) and nodes whose containers the manager saw
    change are marked dirty and rebuilt before the next placement; the others keep their
    indexes and orderings.

    Measured (bench/benchmarks/swarm_run.py, 1,000 fake engines): rebuilding the scheduler's
    view of every node for each create cost ~50 ms a placement (the Node objects and the
    scheduler's indexes); rebuilding only what changed brings that to well under a millisecond.
    """

    def __init__(self, kernel: Any, strategy: str, filters: list[str] | None, overcommit: float,
                 directory: Any, reservations: Reservations, containers_of: Any) -> None:
        self.kernel = kernel
        self.strategy, self.filters, self.overcommit = strategy, filters, overcommit
        self.directory = directory
        self.reservations = reservations
        self.containers_of = containers_of  # node name -> list[NodeContainer] the manager knows
        self.scheduler: Any = None
        self.dirty: set[str] = set()
        self.records: dict[str, Any] = {}  # node name -> the membership's Node, as last reported
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        from dockyard.scheduler import Scheduler

        self.scheduler = Scheduler.from_kernel(self.kernel, self.strategy, self.filters, (), self.overcommit)
        self._task = asyncio.create_task(self._follow(), name="swarm-placement-nodes")
        await asyncio.sleep(0)  # subscribed before the first listing: no change is missed
        for n in await self.directory.nodes():
            self.records.setdefault(n.name, n)
            self.dirty.add(n.name)
        self.reservations.on_change = self.mark

    async def stop(self) -> None:
        await cancel_all([self._task])
        self._task = None

    def mark(self, node: str) -> None:
        self.dirty.add(node)

    async def _follow(self) -> None:
        async for change in self.directory.changes():
            if change.action == "leave":
                self.records.pop(change.node.name, None)
            else:
                self.records[change.node.name] = change.node
            self.dirty.add(change.node.name)

    def _build(self, n: Any) -> Any:
        from dockyard.specs.cluster import Node

        r = self.reservations.by_node.get(n.name)
        return Node(name=n.name, engine_url=n.engine_url, id=n.id, labels=n.labels, cpus=n.cpus, memory=n.memory,
                    reserved_cpus=r.cpus if r else 0.0, reserved_memory=r.memory if r else 0,
                    containers=list(self.containers_of(n.name)), images=set(n.images), healthy=n.healthy,
                    storage_driver=n.storage_driver, kernel_version=n.kernel_version,
                    operating_system=n.operating_system, os_type=n.os_type, architecture=n.architecture,
                    server_version=n.server_version, platforms=n.platforms, emulated_platforms=n.emulated_platforms)

    async def sync(self) -> None:
        while self.dirty:
            name = self.dirty.pop()
            record = self.records.get(name)
            if record is None:
                self.scheduler.remove_node(name)
                continue
            self.scheduler.update(self._build(record))

    async def place(self, request: Any, exclude: set[str] = frozenset()) -> Any:  # type: ignore[assignment]
        """The best node for ``request`` (not one of ``exclude``); NoNodeAvailable naming why
        each node was refused."""
        from dockyard.scheduler import Scheduler

        await self.sync()
        if not exclude:
            return self.scheduler.place(request, limit=1)[0]
        # rescheduling (rare): a scheduler over the other nodes, so soft expressions and the
        # refusal's reasons are judged among them
        others = [n for n in self.scheduler.nodes.values() if n.name not in exclude]
        return Scheduler.from_kernel(self.kernel, self.strategy, self.filters, others,
                                     self.overcommit).place(request, limit=1)[0]

    def reserve(self, node: str, container: Any) -> None:
        """What this manager just placed, before the store's answer (the node is rebuilt from
        the store's view at the next sync)."""
        with contextlib.suppress(e.InvalidArgument):
            self.scheduler.reserve(node, container)
        self.dirty.add(node)


__all__ = ["CONTAINERS", "NAMES", "Pending", "PlacementView", "RESERVATIONS", "Reservation", "Reservations",
           "random_name"]
