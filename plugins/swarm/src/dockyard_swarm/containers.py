"""The manager's ``containers`` service: core's ``Containers`` over the cluster's nodes.

Swarm classic's model. A create is placed by core's scheduler over the nodes the ``nodes``
service (membership) knows, reserved in one etcd transaction (:mod:`dockyard_swarm.placement`),
then created on the chosen node's engine with the client's own body; a node that fails the
create gets its reservation back. Every call naming a container goes to the node that holds
it (:class:`~dockyard_swarm.engines.EngineClient`); ``ps`` merges every node's containers, named
``node/name``; container IDs are the nodes' own.

The Protocol's readers are synchronous (``get``, ``list``, ``exec_get``): they answer from a
cache of the nodes' inspect answers. The cache is refreshed before the front reads it: the API
middleware of :mod:`dockyard_swarm.containers_api` awaits :meth:`ClusterContainers.refresh`
for a route naming a container (one inspect on its node) and :meth:`refresh_all` for ``ps``
(one list per node, an inspect for each container that is new or changed state).
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from dockyard import errors as e
from dockyard.model import Container, ContainerStatus
from dockyard.scheduler import DEFAULT_STRATEGY, request_from_create, select
from dockyard.services import Service
from dockyard.services.containers import ContainerCreate
from dockyard.specs.cluster import Node, NodeContainer
from dockyard.specs.network import PortMapping
from dockyard_swarm.containers_down import DownNodes, mark_down
from dockyard_swarm.containers_io import ContainerIO
from dockyard_swarm.containers_shape import bound_ports, container_from, create_body
from dockyard_swarm.engines import EngineClient, EngineUnreachable
from dockyard_swarm.placement import CONTAINERS, NAMES, Pending, PlacementView, Reservations, random_name

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard_swarm.engines import EnginesService

log = logging.getLogger(__name__)

#: How often a lost reservation race is placed again before the create fails.
PLACE_ATTEMPTS = 8


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


class ClusterContainers(Service, ContainerIO, DownNodes):
    """Containers placed over the cluster (``kernel.containers`` on a manager)."""

    name = "containers"

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        self._by_id: dict[str, Placed] = {}
        self._on_node: dict[str, dict[str, Placed]] = {}
        self._execs: dict[str, Any] = {}
        self._reservations: Reservations | None = None
        self._view: PlacementView | None = None
        self._complete = False  # every node's containers were listed once
        values = kernel.config.values
        self.strategy = str(values.get("strategy") or DEFAULT_STRATEGY)
        flt = values.get("filters")
        self.filters: list[str] | None = [str(f) for f in flt] if flt else None
        self.overcommit = float(values.get("overcommit") or 0.05)

    # ------------------------------------------------------------------ collaborators
    @property
    def engines(self) -> EnginesService:
        return cast("EnginesService", self.kernel.service("engines"))

    @property
    def directory(self) -> Any:
        """The ``nodes`` service (membership): ``await nodes()``, ``await node(name)``."""
        return self.kernel.service("nodes")

    async def _store_view(self) -> Reservations:
        if self._reservations is None:
            self._reservations = Reservations(await self.kernel.cluster_store())
            await self._reservations.start()
        return self._reservations

    def _client(self, p: Placed) -> EngineClient:
        self._check_up(p)
        return self.engines.client(p.node, p.addr)

    async def _placement(self) -> PlacementView:
        if self._view is None:
            view = PlacementView(self.kernel, self.strategy, self.filters, self.overcommit, self.directory,
                                 await self._store_view(), self._fits_on)
            await view.start()
            self._view = view
        return self._view

    async def start(self) -> None:
        # an unknown strategy or filter stops the manager at start, naming what is installed
        select(self.kernel, self.strategy, self.filters)
        await self._placement()
        # what the nodes already run (ports, names, images the filters check), in the background
        self._spawn(self._initial_refresh())

    async def _initial_refresh(self) -> None:
        try:
            await self.refresh_all()
            # from now on the nodes' events (node_event) and the store's records find the rest
            self._complete = True
        except e.DockyardError as exc:
            log.warning("listing the nodes' containers at start: %s", exc)

    async def stop(self) -> None:
        if self._view is not None:
            await self._view.stop()
        if self._reservations is not None:
            await self._reservations.stop()
        await ContainerIO.stop_io(self)

    # ------------------------------------------------------------------ the cache
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
        kv = await store.get(NAMES + bare)
        cid = kv.value.decode() if kv is not None else ref
        rec = await store.get(CONTAINERS + cid)
        if rec is not None:
            doc = rec.json()
            try:
                node = await self.directory.node(doc["node"])
            except e.NotFound:
                node = None
            if node is not None:
                client = self.engines.for_node(node)
                try:
                    inspect = await client.get(f"/containers/{cid}/json")
                except (e.NotFound, EngineUnreachable):
                    inspect = None
                if inspect is not None:
                    return self._remember(node.name, client.addr, inspect, float(doc.get("cpus") or 0),
                                          int(doc.get("memory") or 0))
            elif not doc.get("pending"):
                return self._from_record(doc)  # its node is dropped: shown as last recorded
        if not self._complete:  # until the first listing, a miss may be a container not seen yet
            await self.refresh_all()
        return self._find(ref)

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

    # ------------------------------------------------------------------ placement
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
        await view.confirm(pending, cid)
        # the model stands for the node's until the next refresh (the front needs the ID only)
        doc = {"Id": cid, "Name": "/" + pending.name, "Config": {**body, "Image": body.get("Image", "")},
               "HostConfig": body.get("HostConfig") or {}, "State": {"Status": "created"}, "Created": _iso()}
        p = self._remember(node.name, client.addr, doc, pending.cpus, pending.memory)
        p.stale = True
        return p.container

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
        return c.id

    # ------------------------------------------------------------------ life cycle
    async def _post(self, ref: str, action: str, params: dict[str, Any] | None = None, body: Any = None,
                    timeout: float | None = 60.0) -> Placed:
        p = await self._locate(ref)
        try:
            await self._client(p).request("POST", f"/containers/{p.id}/{action}", params, body, timeout=timeout)
        except e.NotFound as exc:
            if "No such container" in str(exc):
                await self._forget(p)
            raise
        finally:
            p.stale = True
        return p

    async def start_container(self, ref: str) -> Container:
        p = await self._post(ref, "start")
        return p.container

    async def stop_container(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        await self._post(ref, "stop", {"t": timeout, "signal": sig}, timeout=None)

    async def kill(self, ref: str, sig: str | None = None) -> None:
        await self._post(ref, "kill", {"signal": sig})

    async def restart(self, ref: str, timeout: int | None = None) -> None:
        await self._post(ref, "restart", {"t": timeout}, timeout=None)

    async def pause(self, ref: str) -> None:
        await self._post(ref, "pause")

    async def unpause(self, ref: str) -> None:
        await self._post(ref, "unpause")

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        p = await self._locate(ref)
        if p.down:
            await self._remove_down(p, force)
        try:
            await self._client(p).request("DELETE", f"/containers/{p.id}", {"force": force, "v": volumes},
                                          timeout=None)
        except e.NotFound as exc:
            if "No such container" not in str(exc):
                raise
        await self._forget(p)

    async def prune(self, until: float | None = None, labels: list[str] | None = None) -> tuple[list[str], int]:
        filters: dict[str, list[str]] = {}
        if until is not None:
            filters["until"] = [str(int(until))]
        if labels:
            filters["label"] = list(labels)
        removed: list[str] = []
        reclaimed = 0
        for n in await self.directory.nodes():
            try:
                out = await self.engines.for_node(n).post("/containers/prune",
                                                          {"filters": json.dumps(filters)} if filters else None)
            except EngineUnreachable:
                continue
            for cid in (out or {}).get("ContainersDeleted") or []:
                removed.append(cid)
                p = self._by_id.get(cid)
                if p is not None:
                    await self._forget(p)
            reclaimed += int((out or {}).get("SpaceReclaimed") or 0)
        return removed, reclaimed

    async def wait(self, ref: str, condition: str = "not-running") -> int:
        p = await self._locate(ref)
        out = await self._client(p).post(f"/containers/{p.id}/wait", {"condition": condition}, timeout=None)
        p.stale = True
        if condition == "removed":  # docker run --rm: gone from its node, so from the cluster
            await self._forget(p)
        err = (out or {}).get("Error")
        if err and err.get("Message"):
            raise e.DockyardError(err["Message"])
        return int((out or {}).get("StatusCode") or 0)

    async def rename(self, ref: str, new_name: str) -> None:
        new_name = new_name.lstrip("/")
        p = await self._locate(ref)
        view = await self._store_view()
        store = view.store
        from dockyard.specs.cluster import Compare, Delete, Put

        res = await store.txn([Compare.absent(NAMES + new_name)], [Put(NAMES + new_name, p.id.encode())])
        if not res.succeeded:
            raise e.Conflict(f'Conflict. The container name "/{new_name}" is already in use')
        try:
            await self._client(p).request("POST", f"/containers/{p.id}/rename", {"name": new_name})
        except BaseException:
            await store.delete(NAMES + new_name)
            raise
        old = p.bare_name
        ops: list[Any] = [Delete(NAMES + old)]
        rec = await store.get(CONTAINERS + p.id)
        if rec is not None:
            doc = dict(rec.json(), name=new_name)
            ops.append(Put(CONTAINERS + p.id, json.dumps(doc).encode()))
        await store.txn([Compare.value_is(NAMES + old, p.id.encode())], ops)
        await self._inspect(p)

    async def update(self, ref: str, resources: dict[str, Any], restart_policy: Any = None) -> list[str]:
        from dockyard_swarm.containers_io import UPDATE_KEYS

        body: dict[str, Any] = {UPDATE_KEYS.get(k, k): v for k, v in resources.items()}
        if restart_policy is not None:
            body["RestartPolicy"] = {"Name": restart_policy.name,
                                     "MaximumRetryCount": restart_policy.maximum_retry_count}
        p = await self._locate(ref)
        out = await self._client(p).post(f"/containers/{p.id}/update", None, body)
        p.stale = True
        return list((out or {}).get("Warnings") or [])

    async def remove_link(self, link_name: str) -> None:
        """``docker rm --link /<parent>/<alias>`` on the parent's node (links never cross nodes:
        the dependency filter keeps a linked container beside its target)."""
        parent, _, alias = link_name.strip("/").rpartition("/")
        if not parent or not alias:
            raise e.InvalidArgument(f"invalid link name {link_name!r}: expected /<parent>/<alias>")
        p = await self._locate(parent)
        await self._client(p).request("DELETE", f"/containers/{p.bare_name}/{alias}", {"link": True})
        p.stale = True

    def rootfs(self, ref: str) -> AbstractAsyncContextManager[tuple[Container, str]]:
        raise e.Unavailable("a swarm manager holds no container file systems: the node of "
                            f"{ref!r} does; use the archive endpoints (docker cp)")


def _now() -> float:
    import time

    return time.time()


def _iso() -> str:
    from dockyard.model import now_iso

    return now_iso()


__all__ = ["ClusterContainers", "Placed", "node_container"]
