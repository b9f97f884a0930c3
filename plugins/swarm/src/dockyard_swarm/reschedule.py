"""Rescheduling on node failure (Swarm classic's watchdog), run by the leading manager only.

A container asks for it with ``-e reschedule:on-node-failure`` or the label
``com.docker.swarm.reschedule-policies=["on-node-failure"]``. When its node is dropped (its lease
expired: :class:`~dockyard_swarm.membership.NodeDirectory` says ``leave``), the leader places
the container's stored create body again on a healthy node through the containers service's
create path (same name, same config, a new ID), starts it and emits a ``reschedule`` event.
Before it does, it writes ``rescheduled/<old id>`` = ``{"node", "id", "name", "new", "to"}``; when
the lost node comes back (``join``), the leader removes the stale copy from that node's engine and
deletes the marker, so a node back after being dropped rejoins without duplicating containers.
Containers without the policy stay recorded on the dropped node, which the manager shows as
unhealthy.

Every step is idempotent and the leader also sweeps when it starts leading, so a leader that
dies halfway is finished by the next one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import TYPE_CHECKING, Any, cast

from dockyard.errors import DockyardError, NotFound, StoreUnavailable
from dockyard_swarm.membership import DEFAULT_TTL, NodeChange

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.specs.cluster import ClusterStore, Node
    from dockyard_swarm.leader import Leadership
    from dockyard_swarm.membership import NodeDirectory

log = logging.getLogger("dockyard.swarm.reschedule")

CONTAINERS = "containers/"
RESCHEDULED = "rescheduled/"
POLICY_ENV = "reschedule:"
POLICY_LABEL = "com.docker.swarm.reschedule-policies"
ON_NODE_FAILURE = "on-node-failure"
#: How often the leader sweeps besides reacting to node changes (a change it missed while the
#: store was away, a record written by a manager that died mid-create).
SWEEP_EVERY = 5.0
#: After it starts leading, a manager waits this long before moving containers of nodes it has
#: no record of: engines restarting with it (a cluster coming back up) rejoin within their TTL,
#: and their containers stay where they are.
START_GRACE = DEFAULT_TTL
#: A pending record (a create between its reservation and the record of the node's ID) older
#: than this is settled by the sweep: no create is still in flight then (an engine call gives
#: up after 60 s), so its manager died or lost the store meanwhile.
PENDING_STALE = 120.0


def policies(config: dict[str, Any]) -> list[str]:
    """The reschedule policies a Docker create body asks for (env entries and the label)."""
    out: list[str] = []
    for item in config.get("Env") or []:
        if isinstance(item, str) and item.startswith(POLICY_ENV):
            out.append(item[len(POLICY_ENV):].strip())
    label = (config.get("Labels") or {}).get(POLICY_LABEL)
    if label:
        try:
            parsed = json.loads(label)
        except ValueError:
            parsed = [label]
        out.extend(str(p) for p in (parsed if isinstance(parsed, list) else [parsed]))
    return out


def wants_reschedule(record: dict[str, Any]) -> bool:
    if "reschedule" in record:
        return bool(record["reschedule"])
    return ON_NODE_FAILURE in policies(record.get("config") or {})


class Rescheduler:
    """The leader's watchdog over node departures and returns."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.store: ClusterStore | None = None
        self._lock = asyncio.Lock()
        # containers no node could take, with the nodes there were then: tried again (and
        # logged again) only when the pool changes
        self._failed: dict[str, frozenset[str]] = {}
        self._leading_since = 0.0
        # what the sweep reads of each containers/<id> record (node, policy), by key and
        # revision: a record is decoded again only when it changed
        self._read: dict[str, tuple[int, str, bool, float]] = {}

    @property
    def nodes(self) -> NodeDirectory:
        return cast("NodeDirectory", self.kernel.service("nodes"))

    @property
    def leadership(self) -> Leadership:
        return cast("Leadership", self.kernel.service("leadership"))

    async def run(self) -> None:
        """Work while leading; pause when another replica leads."""
        self.store = await self.kernel.cluster_store()
        while True:
            await self.leadership.leading()
            work = asyncio.create_task(self._lead(), name="swarm-reschedule-work")
            lost = asyncio.create_task(self.leadership.lost())
            try:
                await asyncio.wait({work, lost}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (work, lost):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if work.done() and not work.cancelled() and work.exception() is not None:
                log.error("rescheduler failed: %r; starting again", work.exception())
                await asyncio.sleep(1)

    async def _lead(self) -> None:
        changes = self.nodes.changes()
        pending: asyncio.Task[NodeChange] | None = None
        self._leading_since = time.monotonic()
        try:
            await self._sweep_safely()
            while True:
                pending = pending or asyncio.ensure_future(anext(changes))
                grace = self._leading_since + START_GRACE - time.monotonic()
                done, _ = await asyncio.wait({pending}, timeout=grace + 0.1 if grace > 0 else SWEEP_EVERY)
                if not done:
                    await self._sweep_safely()
                    continue
                change = pending.result()
                pending = None
                if change.action == "leave":
                    await self._sweep_safely()
                elif change.action in ("join", "healthy"):
                    await self._safely(self.remove_stale(change.node))
        finally:
            if pending is not None:
                pending.cancel()
            await changes.aclose()

    async def _sweep_safely(self) -> None:
        await self._safely(self.sweep())

    async def _safely(self, work: Any) -> None:
        try:
            await work
        except StoreUnavailable as exc:
            log.warning("rescheduler: cluster store unavailable: %s", exc)

    # ------------------------------------------------------------------ the work
    async def sweep(self) -> list[str]:
        """Reschedule every opted-in container recorded on a node that has no record (dropped);
        remove stale copies on nodes that are back. Returns the new IDs."""
        assert self.store is not None
        async with self._lock:
            live = {n.name: n for n in await self.nodes.nodes()}
            pool = frozenset(n for n, node in live.items() if node.healthy)
            moved = []
            records = await self._records()
            for kv, node, wanted, _pending in records:
                if node and node not in live and wanted and self.settled():
                    record = kv.json()
                    if self._failed.get(str(record.get("id"))) == pool:
                        continue
                    new = await self._reschedule(record, pool)
                    if new:
                        moved.append(new)
            markers = await self._markers()
            for node in live.values():
                if node.healthy:
                    await self._remove_stale(node, markers)
            stale = time.time() - PENDING_STALE
            for kv, node, _wanted, pending in records:
                if pending and pending < stale and node in live and live[node].healthy:
                    containers: Any = self.kernel.service("containers")
                    await containers.settle_pending(kv.json(), kv.mod_revision)
            return moved

    async def _records(self) -> list[tuple[Any, str, bool, float]]:
        """Every ``containers/`` record with its node, whether it asks to be rescheduled and,
        for a pending one, when its create began (else 0).

        Measured (bench/benchmarks/swarm_run.py, 2,000 records): decoding every record each
        sweep held the event loop ~15 ms every 5 s (a create's p99); records are decoded again
        only when their revision moved, yielding to the loop every 200."""
        assert self.store is not None
        out: list[tuple[Any, str, bool, float]] = []
        read: dict[str, tuple[int, str, bool, float]] = {}
        decoded = 0
        for kv in await self.store.list(CONTAINERS):
            hit = self._read.get(kv.key)
            if hit is None or hit[0] != kv.mod_revision:
                try:
                    record = kv.json()
                except ValueError:
                    continue
                pending = float(record.get("created") or 1) if record.get("pending") else 0.0
                hit = (kv.mod_revision, str(record.get("node") or ""), wants_reschedule(record), pending)
                decoded += 1
                if decoded % 200 == 0:
                    await asyncio.sleep(0)
            read[kv.key] = hit
            out.append((kv, *hit[1:]))
        self._read = read
        return out

    async def _markers(self) -> list[tuple[str, dict[str, Any]]]:
        """The ``rescheduled/`` markers, ``(key, marker)``: listed once a sweep, not per node."""
        assert self.store is not None
        out = []
        for kv in await self.store.list(RESCHEDULED):
            try:
                marker = kv.json()
            except ValueError:
                continue
            if isinstance(marker, dict):
                out.append((kv.key, marker))
        return out

    def settled(self) -> bool:
        """Whether the start grace is over (see :data:`START_GRACE`)."""
        return time.monotonic() - self._leading_since >= START_GRACE

    async def remove_stale(self, node: Node) -> None:
        async with self._lock:
            await self._remove_stale(node)

    async def _reschedule(self, record: dict[str, Any], pool: frozenset[str] = frozenset()) -> str | None:
        assert self.store is not None
        old_id, old_node = str(record["id"]), str(record["node"])
        name = str(record.get("name") or "").lstrip("/")
        marker = {"node": old_node, "id": old_id, "name": name, "new": "", "to": "", "at": time.time()}
        await self.store.put(f"{RESCHEDULED}{old_id}", json.dumps(marker).encode())
        containers: Any = self.kernel.service("containers")
        try:
            new_id = await containers.recreate(record, {old_node})
        except DockyardError as exc:
            log.warning("cannot reschedule container %s (%s) from node %s: %s", name, old_id[:12], old_node, exc)
            await self.store.delete(f"{RESCHEDULED}{old_id}")  # it stays recorded on its node
            self._failed[old_id] = pool
            return None
        self._failed.pop(old_id, None)
        kv = await self.store.get(f"{CONTAINERS}{new_id}")
        to = str(kv.json().get("node", "")) if kv is not None else ""
        marker.update(new=new_id, to=to)
        await self.store.put(f"{RESCHEDULED}{old_id}", json.dumps(marker).encode())
        try:
            await containers.start_container(new_id)
        except DockyardError as exc:
            log.warning("rescheduled container %s (%s) on %s did not start: %s", name, new_id[:12], to, exc)
        log.info("Rescheduled container %s from %s to %s as %s", old_id[:12], old_node, to, new_id[:12])
        self.kernel.emit("container", "reschedule", new_id, name=name, previous=old_id, **{"from": old_node, "to": to})
        return new_id

    async def _remove_stale(self, node: Node, markers: list[tuple[str, dict[str, Any]]] | None = None) -> None:
        """Remove from ``node`` the copies of containers rescheduled away from it (``markers``:
        the sweep's one listing)."""
        assert self.store is not None
        for key, marker in (await self._markers()) if markers is None else markers:
            if marker.get("node") != node.name or not marker.get("new"):
                continue
            engines: Any = self.kernel.service("engines")
            try:
                await engines.for_node(node).request("DELETE", f"/containers/{marker['id']}",
                                                     params={"force": "1", "v": "1"})
            except NotFound:
                pass
            except DockyardError as exc:
                log.warning("stale copy %s on returning node %s not removed yet: %s", marker["id"][:12], node.name, exc)
                continue
            log.info("removed stale container %s (%s) from returning node %s", marker.get("name"),
                     marker["id"][:12], node.name)
            await self.store.delete(key)


async def run(kernel: Kernel) -> None:
    """The manager's ``swarm-reschedule`` background service."""
    await Rescheduler(kernel).run()
