"""Placing containers, a part of the manager's ``containers`` service
(:class:`~dockyard_swarm.containers.ClusterContainers`): Swarm classic's create path.

A create's body becomes a placement request (``request_from_create``: ``constraint:``,
``affinity:`` and ``reschedule:`` leave ``Env`` for the ``com.docker.swarm.*`` labels); the
placement view (:class:`~dockyard_swarm.placement.PlacementView`, core's scheduler kept in step)
picks the node; one etcd transaction reserves it (:meth:`Reservations.reserve
<dockyard_swarm.placement.Reservations.reserve>`: the name, the node's totals by
compare-and-swap, a pending record); then the node's engine creates it with the client's own
body, and its ID becomes the cluster's. A lost reservation race places again; a node that fails
the create gets everything released. :meth:`ContainerPlacement.recreate` places a stored record
again (the rescheduler), and :meth:`ContainerPlacement.resize` changes a placed container's
reservation (``docker update --cpus/--memory``).
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from dockyard import errors as e
from dockyard.model import Container
from dockyard.scheduler import request_from_create
from dockyard.services.containers import ContainerCreate
from dockyard.specs.cluster import Node, NodeContainer
from dockyard_swarm.containers_shape import create_body
from dockyard_swarm.placement import CONTAINERS, NAMES, Pending, random_name

log = logging.getLogger("dockyard_swarm.containers")

if TYPE_CHECKING:
    from dockyard_swarm.containers_cache import Placed
    from dockyard_swarm.engines import EnginesService
    from dockyard_swarm.placement import PlacementView, Reservations

#: How often a lost reservation race is placed again before the create fails.
PLACE_ATTEMPTS = 8


class ContainerPlacement:
    """Mixed into :class:`~dockyard_swarm.containers.ClusterContainers` (which provides the
    collaborators and the cache: ``_remember``, ``_put``, ``_drop``, ``_by_id``)."""

    _confirming: dict[str, asyncio.Future[None]]  # container ID -> its record being written

    if TYPE_CHECKING:
        _by_id: dict[str, Placed]

        overcommit: float

        @property
        def engines(self) -> EnginesService: ...
        @property
        def directory(self) -> Any: ...
        async def _store_view(self) -> Reservations: ...
        async def _placement(self) -> PlacementView: ...
        def _remember(self, node: str, addr: str, doc: dict[str, Any], cpus: float = 0.0,
                      memory: int = 0) -> Placed: ...
        def _put(self, p: Placed) -> None: ...
        def _drop(self, p: Placed) -> None: ...

    async def create(self, req: ContainerCreate) -> Container:
        return await self._create(create_body(req), req.name, platform=req.platform)

    async def _create(self, body: dict[str, Any], name: str, exclude: set[str] = frozenset(),  # type: ignore[assignment]
                      platform: str = "") -> Container:
        request, to_send = request_from_create(body, name, platform)
        view = await self._store_view()
        chosen = name
        for attempt in range(PLACE_ATTEMPTS):
            if not name:
                chosen = random_name(attempt)
                request.name = chosen
            placement = await self._placement()
            node = await placement.place(request, set(exclude))
            record = {"config": to_send, "reschedule": "on-node-failure" in request.reschedule,
                      "cpus": request.cpus, "memory": request.memory, "created": _now()}
            if request.platform:
                record["platform"] = request.platform  # a rescheduled copy asks for it again
            try:
                pending = await view.reserve(node.name, chosen, request.cpus, request.memory, record)
                placement.reserve(node.name, NodeContainer(id=pending.pending_id, name=chosen, image=request.image,
                                                           ports=tuple(request.ports), labels=dict(request.labels),
                                                           cpus=request.cpus, memory=request.memory))
            except e.TxnFailed:
                continue  # another manager changed the node's reservation: place again
            except e.Conflict:
                if name:
                    raise
                continue  # a generated name was taken: draw another
            return await self._create_on(node, pending, to_send, request.platform)
        raise e.Unavailable(f"could not place {name or 'the container'}: the nodes' reservations kept changing "
                            f"({PLACE_ATTEMPTS} attempts)")

    async def _create_on(self, node: Node, pending: Pending, body: dict[str, Any], platform: str = "") -> Container:
        view = await self._store_view()
        client = self.engines.for_node(node)
        params = {"name": pending.name, **({"platform": platform} if platform else {})}
        try:
            answer = await client.post("/containers/create", params, body)
            cid = answer["Id"]
        except BaseException:
            await asyncio.shield(view.release(node.name, pending.name, pending.pending_id, pending.cpus,
                                              pending.memory))
            raise
        self._confirm_later(view, pending, cid)
        # the model stands for the node's until the next refresh (the front needs the ID only)
        doc = {"Id": cid, "Name": "/" + pending.name, "Config": {**body, "Image": body.get("Image", "")},
               "HostConfig": body.get("HostConfig") or {}, "State": {"Status": "created"}, "Created": _iso()}
        p = self._remember(node.name, client.addr, doc, pending.cpus, pending.memory)
        p.stale = True
        return p.container

    def _confirm_later(self, view: Reservations, pending: Pending, cid: str) -> None:
        """Record the node's ID (``containers/<id>``, ``names/<name>`` -> id, the pending record
        gone: :meth:`Reservations.confirm <dockyard_swarm.placement.Reservations.confirm>`)
        right after the create answers, not before: the client's next call (``docker run``'s
        start) needs only the node, so the etcd round trip leaves the create's path. A call that
        reads or changes the container's records first awaits it (:meth:`_confirmed`). A
        manager that dies in between leaves the pending record, which the leader's sweep
        settles (:meth:`settle_pending`), as it does for one that died during the node's create.

        Measured (bench/benchmarks/swarm_run.py, 1,000 fake engines): the confirm was 1.4 ms of
        a create's 4.3 ms at p50 and 9 ms at p99 on the loaded 2-core machine."""
        task = asyncio.ensure_future(self._confirm(view, pending, cid))
        self._confirming[cid] = task
        task.add_done_callback(lambda t: self._confirming.pop(cid, None) if self._confirming.get(cid) is t else None)

    async def _confirm(self, view: Reservations, pending: Pending, cid: str) -> None:
        try:
            await view.confirm(pending, cid)
        except e.DockyardError as exc:
            log.warning("recording container %s (%s) created on node %s: %s; its pending record stays until the "
                        "leader's sweep settles it", pending.name, cid[:12], pending.node, exc)

    async def _confirmed(self, cid: str) -> None:
        """Wait for ``cid``'s record (:meth:`_confirm_later`), if it is still being written."""
        task = self._confirming.get(cid)
        if task is not None:
            await asyncio.shield(task)

    async def settle_confirms(self, timeout: float = 10.0) -> None:
        """The records still being written, before the service stops."""
        if self._confirming:
            await asyncio.wait(list(self._confirming.values()), timeout=timeout)

    async def settle_pending(self, record: dict[str, Any], revision: int) -> str:
        """A pending ``containers/<pending id>`` record (at ``revision``) whose create ended long
        ago without its confirm (the manager that placed it died, or the store was away): asks
        the record's node for a container of that name (by name only: an ID starting with the
        name's letters is another container) and records it as created, else releases the
        reservation and the name (:meth:`Reservations.settle
        <dockyard_swarm.placement.Reservations.settle>`, once however many sweeps try). Returns
        ``"confirmed"``, ``"released"`` or ``""`` (the node did not answer, or the record moved:
        left for the next sweep)."""
        view = await self._store_view()
        name, node_name = str(record.get("name") or ""), str(record.get("node") or "")
        try:
            node = await self.directory.node(node_name)
            found = await self.engines.for_node(node).get(f"/containers/{name}/json")
        except e.NotFound:
            found = None
        except e.DockyardError as exc:
            log.info("pending container %s on node %s: %s", name, node_name, exc)
            return ""
        cid = str(found["Id"]) if found is not None and str(found.get("Name") or "") == "/" + name else ""
        if not await view.settle(record, revision, cid):
            return ""
        if cid:
            log.info("pending container %s recorded as %s on node %s", name, cid[:12], node_name)
            return "confirmed"
        log.info("pending container %s on node %s released: the node has no such container", name, node_name)
        return "released"

    async def recreate(self, record: dict[str, Any], exclude: set[str]) -> str:
        """Place a stored ``containers/<id>`` record again, away from ``exclude`` (rescheduling:
        the same name and config). The old record and name are released first and put back
        when no node takes it (the container stays recorded on its node); returns the new ID
        (not started)."""
        from dockyard.specs.cluster import Compare, Put

        view = await self._store_view()
        name = str(record.get("name") or "")
        old = str(record.get("id") or "")
        await view.release(str(record.get("node") or ""), name, old, float(record.get("cpus") or 0),
                           int(record.get("memory") or 0))
        gone = self._by_id.get(old)
        if gone is not None:
            self._drop(gone)
        try:
            c = await self._create(dict(record.get("config") or {}), name, exclude,
                                   platform=str(record.get("platform") or ""))
        except BaseException:
            await asyncio.shield(view.store.txn([Compare.absent(NAMES + name)], [
                Put(NAMES + name, old.encode()), Put(CONTAINERS + old, json.dumps(record).encode())]))
            if gone is not None:
                self._put(gone)  # still shown on its node
            raise
        await self._confirmed(c.id)  # the rescheduler reads the new record next
        return c.id

    # ------------------------------------------------------------------ docker update
    async def resize(self, p: Placed, body: dict[str, Any]) -> tuple[float, int] | None:
        """Before ``docker update`` reaches the node: what the update's body (``NanoCpus``,
        ``CpuShares``, ``Memory``...) asks of the node beyond what ``p`` holds is reserved with
        its record, in one transaction (:meth:`Reservations.adjust
        <dockyard_swarm.placement.Reservations.adjust>`), when the node's totals (with the
        overcommit) hold it; else a :class:`~dockyard.errors.Conflict` naming the node and the
        shortfall, nothing changed. A decrease waits for :meth:`resized` (the node's answer).
        Returns what the record held before (CPUs, memory), for :meth:`unresize`; None when it
        has no record (made on its node directly: it reserves nothing)."""
        view = await self._store_view()
        try:
            node = await self.directory.node(p.node)
        except e.NotFound:
            raise e.Unavailable(f"container {p.bare_name} ({p.id[:12]}) is on node {p.node}, which is not in "
                                "the cluster") from None
        before: list[tuple[float, int]] = []

        def grow(record: dict[str, Any]) -> dict[str, Any]:
            had = (float(record.get("cpus") or 0), int(record.get("memory") or 0))
            before[:] = [had]
            cpus, memory = asked(record, body)
            return dict(record, cpus=max(had[0], cpus), memory=max(had[1], memory))

        def check(now: Any, then: Any) -> str | None:
            return _shortfall(p, node, self.overcommit, now, then)

        changed = await view.adjust(p.id, grow, check)
        return before[0] if changed is not None else None

    async def unresize(self, p: Placed, before: tuple[float, int]) -> None:
        """The node refused the update: the record and the node's totals as they were."""
        view = await self._store_view()
        await view.adjust(p.id, lambda record: dict(record, cpus=before[0], memory=before[1]))

    async def resized(self, p: Placed, body: dict[str, Any]) -> None:
        """The node took the update: the record holds the new settings (a rescheduled copy asks
        for them) and reserves what they ask (a decrease is released now)."""
        view = await self._store_view()

        def settle(record: dict[str, Any]) -> dict[str, Any]:
            cpus, memory = asked(record, body)
            config = dict(record.get("config") or {})
            config["HostConfig"] = {**(config.get("HostConfig") or {}), **body}
            return dict(record, cpus=cpus, memory=memory, config=config)

        changed = await view.adjust(p.id, settle)
        if changed is not None:
            p.fit = replace(p.fit, cpus=float(changed[1]["cpus"]), memory=int(changed[1]["memory"]))
            self._put(p)


def asked(record: dict[str, Any], body: dict[str, Any]) -> tuple[float, int]:
    """The CPUs and memory a container recorded with ``record`` reserves once ``body`` (an
    update's) applies: Swarm classic's reading of a create body (``NanoCpus``, else
    ``CpuShares`` as a CPU count; ``Memory``), as its placement read it."""
    host = {**((record.get("config") or {}).get("HostConfig") or {}), **body}
    request, _ = request_from_create({"HostConfig": host})
    return request.cpus, request.memory


def _shortfall(p: Placed, node: Node, overcommit: float, now: Any, then: Any) -> str | None:
    """Why ``node`` cannot hold its totals growing from ``now`` to ``then`` (None: it can)."""
    room = 1.0 + overcommit
    short = []
    if then.cpus > now.cpus and then.cpus > node.cpus * room + 1e-9:
        free = max(0.0, node.cpus * room - now.cpus)
        short.append(f"{then.cpus - node.cpus * room:.3g} CPUs short (the update asks {then.cpus - now.cpus:g} "
                     f"more, {free:.3g} of its {node.cpus:g} are free)")
    if then.memory > now.memory and then.memory > node.memory * room:
        free_mem = max(0, int(node.memory * room) - now.memory)
        short.append(f"{_size(then.memory - int(node.memory * room))} of memory short (the update asks "
                     f"{_size(then.memory - now.memory)} more, {_size(free_mem)} of its {_size(node.memory)} "
                     "are free)")
    if not short:
        return None
    return (f"cannot update container {p.bare_name} ({p.id[:12]}): node {node.name} is "
            f"{' and '.join(short)}, with an overcommit of {overcommit:.0%}")


def _size(n: int) -> str:
    return f"{n / (1 << 30):.3g} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.3g} MiB"


def _now() -> float:
    import time

    return time.time()


def _iso() -> str:
    from dockyard.model import now_iso

    return now_iso()


__all__ = ["PLACE_ATTEMPTS", "ContainerPlacement", "asked"]
