"""The manager's cache of the nodes' containers, a part of the ``containers`` service
(:class:`~dockyard_swarm.containers.ClusterContainers`).

The Protocol's readers are synchronous (``get``, ``list``, ``counts``): they answer from the
nodes' inspect answers kept here as :class:`Placed` entries, by ID and by node. The entries are
refreshed before the front reads them: the API middleware of :mod:`dockyard_swarm.containers_api`
awaits :meth:`ContainerCache.refresh` for a route naming a container (one inspect on its node)
and :meth:`ContainerCache.refresh_all` for ``ps`` (one list per node, an inspect for each
container that is new or changed state). A container the cache does not know is found through
the store (``names/``, ``containers/``), else by listing every node. Each change of a node's
entries marks that node for the placement view (what the scheduler's filters see of it).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dockyard import errors as e
from dockyard.model import Container, ContainerStatus
from dockyard.specs.cluster import Node, NodeContainer
from dockyard.specs.network import PortMapping
from dockyard_swarm.containers_down import mark_down
from dockyard_swarm.containers_shape import bound_ports, container_from
from dockyard_swarm.engines import EngineUnreachable
from dockyard_swarm.placement import CONTAINERS, NAMES, PENDING

if TYPE_CHECKING:
    from dockyard_swarm.engines import EnginesService
    from dockyard_swarm.placement import PlacementView, Reservations

log = logging.getLogger("dockyard_swarm.containers")


def _is_full_id(ref: str) -> bool:
    """A whole container ID (what a create answers), not a name or a prefix."""
    return len(ref) == 64 and all(ch in "0123456789abcdef" for ch in ref)


@dataclass
class Placed:
    """A container the manager knows: its node and the node's inspect answer, as a model."""

    node: str
    addr: str
    container: Container
    fit: NodeContainer  # what the scheduler's filters see of it
    ports: list[PortMapping] = field(default_factory=list)  # bound on the node (its IP for "all")
    stale: bool = False
    down: bool = False  # its node is dropped or does not answer (containers_down)

    @property
    def id(self) -> str:
        return self.container.id

    @property
    def bare_name(self) -> str:
        return self.container.name.split("/", 1)[-1]


def node_container(c: Container, cpus: float = 0.0, memory: int = 0) -> NodeContainer:
    ports: list[tuple[str, int, str]] = []
    for spec, bindings in c.host_config.port_bindings.items():
        port, _, proto = spec.partition("/")
        for b in bindings:
            if b.host_port.isdigit():
                ports.append((b.host_ip, int(b.host_port), proto or "tcp"))
    return NodeContainer(id=c.id, name=c.name.split("/", 1)[-1], image=c.config.image, image_id=c.image_id,
                         ports=tuple(ports), labels=dict(c.config.labels), cpus=cpus, memory=memory)


class ContainerCache:
    """Mixed into :class:`~dockyard_swarm.containers.ClusterContainers`, which provides the
    collaborators (``engines``, ``directory``, ``_store_view``), ``_spawn`` (ContainerIO) and
    the down-node handling (DownNodes)."""

    _by_id: dict[str, Placed]
    _on_node: dict[str, dict[str, Placed]]
    _view: PlacementView | None
    _complete: bool  # every node's containers were listed once

    if TYPE_CHECKING:
        @property
        def engines(self) -> EnginesService: ...
        @property
        def directory(self) -> Any: ...
        async def _store_view(self) -> Reservations: ...
        def _spawn(self, coro: Any) -> None: ...
        def _node_down(self, node: str) -> None: ...
        def _nodes_dropped(self, known: set[str]) -> None: ...
        async def _rebuild_dropped(self, known: set[str]) -> None: ...
        def _from_record(self, record: dict[str, Any]) -> Placed: ...
        async def _confirmed(self, cid: str) -> None: ...

    def _find(self, ref: str) -> Placed | None:
        ref = ref.lstrip("/")
        if not ref:
            return None
        hit = self._by_id.get(ref)
        if hit is not None:
            return hit
        named = [p for p in self._by_id.values() if p.container.name == ref or p.bare_name == ref]
        if len(named) == 1:
            return named[0]
        if len(named) > 1:
            raise e.Conflict(f"container name {ref!r} is ambiguous: "
                             f"{', '.join(sorted(p.container.name for p in named))}; use node/name or the ID")
        found = [p for p in self._by_id.values() if p.id.startswith(ref)]
        if len(found) > 1:
            raise e.NotFound(f"multiple IDs found with provided prefix: {ref}")
        return found[0] if found else None

    def _must(self, ref: str) -> Placed:
        p = self._find(ref)
        if p is None:
            raise e.NotFound(f"No such container: {ref}")
        return p

    def _remember(self, node: str, addr: str, doc: dict[str, Any], cpus: float = 0.0, memory: int = 0) -> Placed:
        c = container_from(doc, node, addr)
        old = self._by_id.get(c.id)
        if old is not None and not (cpus or memory):
            cpus, memory = old.fit.cpus, old.fit.memory
        ip = c.node["IP"]
        p = Placed(node, addr, c, node_container(c, cpus, memory), bound_ports(doc, ip))
        self._put(p)
        return p

    def _put(self, p: Placed) -> None:
        old = self._by_id.get(p.id)
        if old is not None and old.node != p.node:
            self._drop(old)
        self._by_id[p.id] = p
        self._on_node.setdefault(p.node, {})[p.id] = p
        if self._view is not None:
            self._view.mark(p.node)

    def _drop(self, p: Placed) -> None:
        self._by_id.pop(p.id, None)
        self._on_node.get(p.node, {}).pop(p.id, None)
        if self._view is not None:
            self._view.mark(p.node)

    def _fits_on(self, node: str) -> list[NodeContainer]:
        return [p.fit for p in self._on_node.get(node, {}).values()]

    async def _inspect(self, p: Placed) -> Placed | None:
        """The node's current answer for ``p`` (None when the node no longer has it: the
        manager's records of it are released, as after an ``rm``)."""
        try:
            doc = await self.engines.client(p.node, p.addr).get(f"/containers/{p.id}/json")
        except e.NotFound:
            await self._forget(p)
            return None
        return self._remember(p.node, p.addr, doc)

    async def refresh(self, ref: str) -> Placed:
        """Bring ``ref``'s cache entry up to date (one inspect on its node); find a container
        the cache does not know through the store, else by listing every node."""
        p = self._find(ref)
        if p is None:
            p = await self._lookup(ref)
        if p is not None:
            await self._confirmed(p.id)  # whoever reads next may read its records
            if p.down and not await self._node_back(p):
                return p  # shown as last seen, on a node that is down
            try:
                fresh = await self._inspect(p)
            except EngineUnreachable:
                mark_down(p)
                return p
            if fresh is not None:
                return fresh
        raise e.NotFound(f"No such container: {ref}")

    async def _lookup(self, ref: str) -> Placed | None:
        ref = ref.lstrip("/")
        store = (await self._store_view()).store
        bare = ref.split("/", 1)[-1]
        for _ in range(3):  # the name may move from a pending record to the node's ID in between
            kv = await store.get(NAMES + bare)
            cid = kv.value.decode() if kv is not None else ref
            rec = await store.get(CONTAINERS + cid)
            if rec is not None or kv is None:
                break
        if rec is None and kv is None and _is_full_id(ref):
            found = await self._among_pending(store, ref)
            if found is not None:
                return found
            rec = await store.get(CONTAINERS + ref)  # recorded in between
        if rec is not None:
            doc = rec.json()
            try:
                node = await self.directory.node(doc["node"])
            except e.NotFound:
                node = None
            # a pending record (its create under way, or its ID not recorded yet) has no ID:
            # its node knows the container by name (by name only, not an ID starting with it)
            pending = bool(doc.get("pending"))
            if node is not None:
                client = self.engines.for_node(node)
                try:
                    inspect = await client.get(f"/containers/{bare if pending else cid}/json")
                except (e.NotFound, EngineUnreachable):
                    inspect = None
                if inspect is not None and pending and inspect.get("Name") != "/" + bare:
                    inspect = None
                if inspect is not None:
                    return self._remember(node.name, client.addr, inspect, float(doc.get("cpus") or 0),
                                          int(doc.get("memory") or 0))
            elif not pending:
                return self._from_record(doc)  # its node is dropped: shown as last recorded
        if not self._complete:  # until the first listing, a miss may be a container not seen yet
            await self.refresh_all()
        return self._find(ref)

    async def _among_pending(self, store: Any, cid: str) -> Placed | None:
        """``cid`` on the node of a pending record: a create another manager placed has been
        answered (the docker CLI then attaches here, through a replica) but that manager is
        still writing the record of its ID (this manager waits for its own in ``_confirmed``).
        One inspect per node with a pending record; they are few (creates in flight)."""
        by_node: dict[str, list[dict[str, Any]]] = {}
        for kv in await store.list(CONTAINERS + PENDING):
            doc = kv.json()
            by_node.setdefault(str(doc.get("node") or ""), []).append(doc)
        for node_name, docs in by_node.items():
            try:
                node = await self.directory.node(node_name)
                client = self.engines.for_node(node)
                inspect = await client.get(f"/containers/{cid}/json")
            except (e.NotFound, EngineUnreachable):
                continue
            if not inspect or inspect.get("Id") != cid:
                continue
            doc = next((d for d in docs if "/" + str(d.get("name") or "") == inspect.get("Name")), {})
            return self._remember(node.name, client.addr, inspect, float(doc.get("cpus") or 0),
                                  int(doc.get("memory") or 0))
        return None

    async def refresh_all(self) -> None:
        """Every node's containers (``ps``): one list per node, an inspect for each new or
        changed one; a node that does not answer keeps what was last seen of it."""
        nodes = await self.directory.nodes()
        answered = await asyncio.gather(*(self._refresh_node(n) for n in nodes))
        known = {n.name for n in nodes}
        for n, ok in zip(nodes, answered, strict=True):
            if not ok:
                self._node_down(n.name)
        self._nodes_dropped(known)  # their containers stay listed, on a node that is down
        if not self._complete:
            await self._rebuild_dropped(known)

    async def _refresh_node(self, node: Node) -> bool:
        """False when the node's engine does not answer."""
        try:
            client = self.engines.for_node(node)
            summaries = await client.get("/containers/json", {"all": 1})
        except e.DockyardError as exc:
            log.debug("listing containers of node %s: %s", node.name, exc)
            return not isinstance(exc, EngineUnreachable)
        seen = set()
        todo = []
        for s in summaries or []:
            cid = s.get("Id", "")
            seen.add(cid)
            p = self._by_id.get(cid)
            if p is None or p.stale or p.down or p.container.state.status.value != s.get("State"):
                todo.append(cid)
        for p in [p for cid, p in self._on_node.get(node.name, {}).items() if cid not in seen]:
            self._drop(p)

        async def one(cid: str) -> None:
            try:
                doc = await client.get(f"/containers/{cid}/json")
            except e.DockyardError:
                return
            self._remember(node.name, client.addr, doc)

        await asyncio.gather(*(one(cid) for cid in todo))
        return True

    async def _node_back(self, p: Placed) -> bool:
        """Whether the node of ``p`` (down) is listed again (``p.addr`` updated)."""
        try:
            node = await self.directory.node(p.node)
        except e.NotFound:
            return False
        p.addr = self.engines.for_node(node).addr
        return True

    async def _adopt(self, node: str, cid: str) -> None:
        try:
            n = await self.directory.node(node)
            client = self.engines.for_node(n)
            self._remember(n.name, client.addr, await client.get(f"/containers/{cid}/json"))
        except e.DockyardError as exc:
            log.debug("fetching container %s of node %s: %s", cid[:12], node, exc)

    async def _locate(self, ref: str) -> Placed:
        """The cached entry for an async call (no inspect first: the node answers for itself)."""
        p = self._find(ref)
        return p if p is not None else await self.refresh(ref)

    async def _forget(self, p: Placed) -> None:
        """The container is gone from its node: drop it, and release what the manager recorded
        of it (a container made on the node directly has no record, and reserved nothing)."""
        self._drop(p)
        await self._confirmed(p.id)
        view = await self._store_view()
        rec = await view.store.get(CONTAINERS + p.id)
        if rec is None:
            return
        doc = rec.json()
        await view.release(p.node, str(doc.get("name") or p.bare_name), p.id, float(doc.get("cpus") or 0),
                           int(doc.get("memory") or 0))

    def node_event(self, cid: str, action: str, node: str = "") -> None:
        """A container event a node reported (relayed by the ``node-events`` service): a
        ``destroy`` forgets it (``--rm``, a removal on the node itself), a container the cache
        does not know is fetched (made on the node itself), others make the cached answer
        stale."""
        p = self._by_id.get(cid)
        if p is None:
            if node and action != "destroy":
                self._spawn(self._adopt(node, cid))
            return
        if action == "destroy":
            self._spawn(self._forget(p))
        else:
            p.stale = True

    # ------------------------------------------------------------------ reading
    def get(self, ref: str) -> Container:
        return self._must(ref).container

    def list(self) -> list[Container]:
        return [p.container for p in self._by_id.values()]

    def counts(self) -> dict[str, int]:
        out = {"running": 0, "paused": 0, "stopped": 0}
        for p in self._by_id.values():
            st = p.container.state.status
            key = "paused" if st is ContainerStatus.PAUSED else "running" if st in (
                ContainerStatus.RUNNING, ContainerStatus.RESTARTING) else "stopped"
            out[key] += 1
        return out

    def ports_of(self, container_id: str) -> list[PortMapping]:
        """The host ports the container's node bound for it (``ps``/inspect ``Ports``), an
        every-address binding shown with the node's IP; [] for an unknown container."""
        p = self._by_id.get(container_id)
        return list(p.ports) if p is not None else []

    def placed(self) -> dict[str, list[NodeContainer]]:
        """What the scheduler sees of each node's containers, by node name."""
        out: dict[str, list[NodeContainer]] = {}
        for p in self._by_id.values():
            out.setdefault(p.node, []).append(p.fit)
        return out


__all__ = ["ContainerCache", "Placed", "node_container"]
