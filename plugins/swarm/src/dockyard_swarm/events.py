"""The manager's merged event stream and its per-node views (Swarm classic's ``/events`` and its
cached engine state).

:class:`NodeEvents`, the manager's ``node-events`` service, keeps one ``GET /events`` stream open
per node and relays every event into the manager's event bus, so the API front's ``/events``
(and ``--since`` replay) serves them unchanged. Each relayed event carries the node as Swarm
classic gave it: ``Event.node`` (rendered as the top-level ``node: {Name, Id, Addr, Ip}``) and
the actor attributes ``node.name``, ``node.id``, ``node.addr``, ``node.ip``. A stream that ends
is opened again (backoff 0.2 s doubling to 5 s) with ``since`` the last event seen, so events
that happened while the manager was cut off are replayed from the engine's history, not lost.
The manager adds its own: ``engine_connect``, ``engine_disconnect`` and ``engine_reconnect``
(type ``node``, as Swarm classic's ``engine_*`` events), one per transition.

:class:`NodeView` is the cache the sync parts of core's service Protocols (``list``, ``get``,
``resolve``) answer from, as Swarm classic's engines kept their images, networks and volumes:
one value per node, fetched at start, again when the node (re)connects, when its relayed events
touch that kind of object, after each change made through the manager, and every
:data:`REFRESH` seconds. Refreshes of one node coalesce: a burst of events is one fetch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from dockyard.errors import DockyardError, NotFound
from dockyard.model import Event
from dockyard.services import Service
from dockyard_swarm.tasks import cancel_all, json_lines

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.specs.cluster import Node
    from dockyard_swarm.engines import EngineClient

log = logging.getLogger("dockyard.swarm.events")

#: Seconds between two periodic fetches of one node's view (Swarm classic refreshed every 30 to
#: 60 s, --engine-refresh-min/max-interval); events and changes made through the manager refresh
#: a node at once in between.
REFRESH = 60.0
RETRY_FIRST, RETRY_MAX = 0.2, 5.0
#: Seconds a daemon's start waits for a view's first fetch of every node.
START_WAIT = 2.0
#: Fetches of one view in flight at once (a manager of a thousand nodes starts without a burst).
FETCHES = 32
#: Manager events about nodes (Swarm classic's names), type ``node``.
CONNECT, DISCONNECT, RECONNECT = "engine_connect", "engine_disconnect", "engine_reconnect"

#: A listener: ``(node name, what)``, ``what`` an event type (``image``, ``network``...) or one of
#: ``connect`` / ``disconnect`` / ``leave``.
Listener = Callable[[str, str], None]
T = TypeVar("T")


def node_addr(node: Node) -> str:
    """``ADDR:PORT`` of a node's engine."""
    return node.engine_url.partition("://")[2] or node.engine_url


def node_ip(node: Node) -> str:
    host = node_addr(node).rsplit(":", 1)[0]
    return host.strip("[]")


def engine(kernel: Kernel, node: Node) -> EngineClient:
    """The API client of ``node``'s engine, from the manager's one engine pool (the ``engines``
    service)."""
    return kernel.service("engines").for_node(node)  # type: ignore[attr-defined, no-any-return]


def nodes_service(kernel: Kernel) -> Any:
    """The manager's ``nodes`` service (dockyard_swarm.membership.NodeDirectory)."""
    return kernel.service("nodes")


def nodes_events(kernel: Kernel) -> NodeEvents:
    svc = kernel.service(NodeEvents.name)
    assert isinstance(svc, NodeEvents)
    return svc


def relayed(doc: dict[str, Any], node: dict[str, str]) -> Event:
    """A node's event (Docker's JSON message) as the manager's: with the node's fields."""
    actor = doc.get("Actor") or {}
    attributes = {str(k): str(v) for k, v in (actor.get("Attributes") or {}).items()}
    attributes.update({"node.name": node["Name"], "node.id": node["Id"], "node.addr": node["Addr"],
                       "node.ip": node["Ip"]})
    time_nano = int(doc.get("timeNano") or int(doc.get("time") or 0) * 1_000_000_000)
    return Event(type=str(doc.get("Type") or "container"), action=str(doc.get("Action") or doc.get("status") or ""),
                 actor_id=str(actor.get("ID") or doc.get("id") or ""), attributes=attributes,
                 scope=str(doc.get("scope") or "local"), time_nano=time_nano, node=dict(node))


class NodeEvents(Service):
    """The manager's ``node-events`` service: every node's events relayed into the manager's bus,
    with Swarm classic's node fields; listeners (the views) hear what changed where."""

    name = "node-events"

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        self._watchers: dict[str, tuple[str, asyncio.Task[None]]] = {}  # name -> (addr, task)
        self._tasks: list[asyncio.Task[None]] = []
        self._listeners: list[Listener] = []
        self.node_ids: dict[str, str] = {}  # node name -> the engine's ID (its /info)
        self.connected: dict[str, bool] = {}

    # ------------------------------------------------------------------ nodes
    def node_fields(self, node: Node) -> dict[str, str]:
        """Swarm classic's ``node`` of an event: ``Name``, ``Id``, ``Addr``, ``Ip``."""
        return {"Name": node.name, "Id": self.node_ids.get(node.name, ""), "Addr": node_addr(node),
                "Ip": node_ip(node)}

    # ------------------------------------------------------------------ listeners
    def listen(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def _tell(self, node: str, what: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(node, what)
            except Exception:  # noqa: BLE001 - one view's bug must not stop the relay
                log.exception("event listener failed for %s %s", node, what)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        directory = nodes_service(self.kernel)
        for node in await directory.nodes():
            self._watch(node)
        self._tasks.append(asyncio.create_task(self._follow(directory), name="swarm-node-events"))

    async def stop(self) -> None:
        await cancel_all(self._tasks + [t for _a, t in self._watchers.values()])
        self._tasks.clear()
        self._watchers.clear()

    async def _follow(self, directory: Any) -> None:
        async for change in directory.changes():
            if change.action == "leave":
                was_connected = self.connected.get(change.node.name)
                self._unwatch(change.node.name)
                if was_connected:  # a broken stream said so already
                    self.kernel.emit("node", DISCONNECT, change.node.name, name=change.node.name,
                                     addr=node_addr(change.node), reason="left the cluster")
                self._tell(change.node.name, "leave")
            elif change.action in ("join", "update", "healthy"):
                self._watch(change.node)

    def _watch(self, node: Node) -> None:
        current = self._watchers.get(node.name)
        if current is not None:
            if current[0] == node_addr(node) and not current[1].done():
                return
            current[1].cancel()
        task = asyncio.create_task(self._relay(node), name=f"swarm-events-{node.name}")
        self._watchers[node.name] = (node_addr(node), task)

    def _unwatch(self, name: str) -> None:
        found = self._watchers.pop(name, None)
        if found is not None:
            found[1].cancel()
        self.connected.pop(name, None)

    # ------------------------------------------------------------------ one node
    async def _relay(self, node: Node) -> None:
        since: int | None = None  # ns of the last event relayed; None: from now on
        seen_at_since: set[tuple[str, str, str]] = set()
        delay = RETRY_FIRST
        ever = False
        while True:
            try:
                client = engine(self.kernel, node)
                info = await client.get("/info", timeout=10)
                self.node_ids[node.name] = str((info or {}).get("ID") or "")
                fields = self.node_fields(node)
                params = {"since": f"{since // 1_000_000_000}.{since % 1_000_000_000:09d}"} if since else \
                    {"since": str(int(time.time()))}
                async with client.stream("GET", "/events", params) as resp:
                    self.connected[node.name] = True
                    self.kernel.emit("node", RECONNECT if ever else CONNECT, node.name, name=node.name,
                                     addr=node_addr(node))
                    ever = True
                    delay = RETRY_FIRST
                    self._tell(node.name, "connect")
                    async for doc in json_lines(resp.content):
                        ev = relayed(doc, fields)
                        key = (ev.type, ev.action, ev.actor_id)
                        if since is not None and (ev.time_nano < since or (ev.time_nano == since and key in seen_at_since)):
                            continue  # replayed after a reconnect, relayed already
                        if since is None or ev.time_nano > since:
                            since, seen_at_since = ev.time_nano, set()
                        seen_at_since.add(key)
                        self.kernel.events.emit(ev)
                        self._tell(node.name, ev.type)
                    if since is None:
                        since = time.time_ns()
            except asyncio.CancelledError:
                raise
            except (TimeoutError, DockyardError, OSError, ValueError) as exc:
                log.info("events of node %s: %s", node.name, exc)
                if since is None and ever:
                    since = time.time_ns()
            except Exception:  # noqa: BLE001 - a relay must keep trying
                log.exception("events of node %s", node.name)
            if self.connected.get(node.name):
                self.connected[node.name] = False
                self.kernel.emit("node", DISCONNECT, node.name, name=node.name, addr=node_addr(node))
                self._tell(node.name, "disconnect")
            await asyncio.sleep(delay)
            delay = min(RETRY_MAX, delay * 2)


class NodeView(Generic[T]):
    """One kind of object per node (``fetch(client, previous)`` makes a node's value), kept
    fresh from the relay; ``kinds`` are the event types that make a node's value stale."""

    def __init__(self, kernel: Kernel, what: str, kinds: set[str],
                 fetch: Callable[[EngineClient, T | None], Awaitable[T]], *, lazy: bool = False) -> None:
        self.kernel = kernel
        #: lazy: an event only marks the node stale; :meth:`fresh` fetches the stale ones when
        #: asked (for a view read by an async call, so a busy node is not fetched per event)
        self.lazy = lazy
        self.stale: set[str] = set()
        self.what = what
        self.kinds = kinds
        self.fetch = fetch
        self.data: dict[str, T] = {}
        self.errors: dict[str, str] = {}
        self.updated: dict[str, float] = {}  # unix time of each node's last good fetch
        self._running: dict[str, asyncio.Task[None]] = {}
        self._again: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._slots = asyncio.Semaphore(FETCHES)

    async def start(self) -> None:
        """Listen, then fetch every node: the daemon's start waits for that at most
        :data:`START_WAIT` seconds (a few nodes are seen before it answers; a thousand are
        fetched in the background, as Swarm classic's engines connected)."""
        nodes_events(self.kernel).listen(self._heard)
        first = asyncio.create_task(self._first(), name=f"swarm-view-{self.what}-first")
        self._tasks.append(first)
        await asyncio.wait({first}, timeout=START_WAIT)
        self._tasks.append(asyncio.create_task(self._periodic(), name=f"swarm-view-{self.what}"))

    async def _first(self) -> None:
        started = time.monotonic()
        await self.refresh_all()
        log.info("%s of %d nodes fetched in %.2f s", self.what, len(self.data), time.monotonic() - started)

    async def stop(self) -> None:
        await cancel_all(self._tasks + list(self._running.values()))
        self._tasks.clear()
        self._running.clear()

    def _heard(self, node: str, what: str) -> None:
        if what == "leave":
            self.data.pop(node, None)
            self.errors.pop(node, None)
        elif what in self.kinds and self.lazy:
            self.stale.add(node)
        elif what == "connect" or what in self.kinds:
            self.schedule(node)

    def schedule(self, node: str) -> None:
        """Fetch ``node``'s value soon (once more after a fetch in flight)."""
        if node in self._running:
            self._again.add(node)
            return
        self._running[node] = asyncio.create_task(self._refresh_loop(node), name=f"swarm-view-{self.what}-{node}")

    async def _refresh_loop(self, node: str) -> None:
        try:
            while True:
                self._again.discard(node)
                await self._fetch(node)
                if node not in self._again:
                    return
        finally:
            self._running.pop(node, None)

    async def _fetch(self, name: str) -> None:
        try:
            node = await nodes_service(self.kernel).node(name)
        except NotFound:
            self.data.pop(name, None)
            return
        try:
            async with self._slots:
                self.data[name] = await self.fetch(engine(self.kernel, node), self.data.get(name))
            self.errors.pop(name, None)
            self.updated[name] = time.time()
        except (TimeoutError, DockyardError, OSError, ValueError) as exc:
            self.errors[name] = str(exc)
            log.info("%s of node %s: %s", self.what, name, exc)

    async def refresh(self, name: str) -> None:
        """Fetch ``name``'s value now (after a change made through the manager), waiting for a
        fetch in flight first so the answer includes the change."""
        running = self._running.get(name)
        if running is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(running)
        await self._fetch(name)

    async def fresh(self) -> None:
        """Fetch the nodes an event made stale since (a lazy view's read)."""
        stale, self.stale = self.stale, set()
        await asyncio.gather(*(self._fetch(n) for n in sorted(stale)))

    async def refresh_all(self) -> None:
        nodes = await nodes_service(self.kernel).nodes()
        await asyncio.gather(*(self._fetch(n.name) for n in nodes if n.healthy))
        known = {n.name for n in nodes}
        for gone in set(self.data) - known:
            self.data.pop(gone, None)

    async def _periodic(self) -> None:
        """Every node again each :data:`REFRESH` seconds, spread over the interval (a thousand
        nodes are a steady trickle of fetches, not a burst every interval)."""
        while True:
            try:
                every = await nodes_service(self.kernel).nodes()
            except Exception:  # noqa: BLE001 - the directory is back on the next round
                every = []
            nodes = [n.name for n in every if n.healthy]
            for gone in set(self.data) - {n.name for n in every}:  # dropped from the cluster
                if gone not in self._running:
                    self.data.pop(gone, None)
            step = REFRESH / max(1, len(nodes))
            if not nodes:
                await asyncio.sleep(REFRESH)
            for name in nodes:
                await asyncio.sleep(step)
                self.schedule(name)

    def items(self) -> list[tuple[str, T]]:
        """``(node, value)`` sorted by node name."""
        return sorted(self.data.items(), key=lambda kv: kv[0])


__all__ = ["CONNECT", "DISCONNECT", "RECONNECT", "NodeEvents", "NodeView", "engine", "node_addr", "node_ip",
           "relayed"]
