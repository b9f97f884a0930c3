"""The manager's ``containers`` service: core's ``Containers`` over the cluster's nodes.

Swarm classic's model, in four parts mixed into :class:`ClusterContainers`:

- placing (:mod:`dockyard_swarm.containers_place`): a create is placed by core's scheduler over
  the nodes the ``nodes`` service (membership) knows, reserved in one etcd transaction
  (:mod:`dockyard_swarm.placement`), then created on the chosen node's engine with the client's
  own body; a node that fails the create gets its reservation back;
- the cache (:mod:`dockyard_swarm.containers_cache`): the nodes' inspect answers the Protocol's
  synchronous readers (``get``, ``list``) answer from, refreshed before the front reads them;
- the byte-moving calls (:mod:`dockyard_swarm.containers_io`: logs, attach, exec, stats, top,
  archives) and the containers of a node that is down (:mod:`dockyard_swarm.containers_down`);
- here, the service itself and the routing of every other call naming a container to the node
  that holds it (:class:`~dockyard_swarm.engines.EngineClient`): start, stop, kill, restart,
  pause, rm, wait, rename, update. ``ps`` merges every node's containers, named ``node/name``;
  container IDs are the nodes' own.
"""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, cast

from dockyard import errors as e
from dockyard.model import Container
from dockyard.scheduler import DEFAULT_STRATEGY, select
from dockyard.services import Service
from dockyard_swarm.containers_cache import ContainerCache, Placed, node_container
from dockyard_swarm.containers_down import DownNodes
from dockyard_swarm.containers_io import ContainerIO
from dockyard_swarm.containers_place import ContainerPlacement
from dockyard_swarm.engines import EngineClient, EngineUnreachable
from dockyard_swarm.placement import CONTAINERS, NAMES, PlacementView, Reservations
from dockyard_swarm.tasks import cancel_all

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard_swarm.engines import EnginesService

log = logging.getLogger(__name__)


class ClusterContainers(Service, ContainerCache, ContainerPlacement, ContainerIO, DownNodes):
    """Containers placed over the cluster (``kernel.containers`` on a manager)."""

    name = "containers"
    #: seconds a stop waits for the container records still being written (then they are cancelled)
    stop_wait = 10.0

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        self._by_id: dict[str, Placed] = {}
        self._on_node: dict[str, dict[str, Placed]] = {}
        self._execs: dict[str, Any] = {}
        self._confirming: dict[str, asyncio.Future[None]] = {}
        self._reservations: Reservations | None = None
        self._view: PlacementView | None = None
        self._making = asyncio.Lock()  # the two above, made once
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
            # one view (and one watch task, which stop() ends) however many callers come at once
            async with self._making:
                if self._reservations is None:
                    view = Reservations(await self.kernel.cluster_store())
                    await view.start()
                    self._reservations = view
        return self._reservations

    def _client(self, p: Placed) -> EngineClient:
        self._check_up(p)
        return self.engines.client(p.node, p.addr)

    async def _placement(self) -> PlacementView:
        if self._view is None:
            reservations = await self._store_view()
            async with self._making:
                if self._view is None:
                    view = PlacementView(self.kernel, self.strategy, self.filters, self.overcommit, self.directory,
                                         reservations, self._fits_on)
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
        # nothing of this service outlives its stop: the records being written get a bounded
        # wait, then every background task is cancelled and waited for (bounded: cancel_all)
        await self.settle_confirms(self.stop_wait)
        left = list(self._confirming.values())
        if left:
            log.warning("stopping: %d container record(s) not written yet; their pending records stay for the "
                        "leader's sweep", len(left))
            await cancel_all(left)
        await ContainerIO.stop_io(self)
        if self._view is not None:
            await self._view.stop()
        if self._reservations is not None:
            await self._reservations.stop()

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
        await self._confirmed(p.id)
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
        client = self._client(p)
        await self._confirmed(p.id)
        # Swarm classic's reservation follows: growth reserved first (refused when the node
        # cannot hold it), rolled back when the node refuses; the record and a decrease after
        before = await self.resize(p, body)
        try:
            out = await client.post(f"/containers/{p.id}/update", None, body)
        except BaseException:
            if before is not None:
                await asyncio.shield(self.unresize(p, before))
            raise
        finally:
            p.stale = True
        if before is not None:
            await self.resized(p, body)
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


__all__ = ["ClusterContainers", "Placed", "node_container"]
