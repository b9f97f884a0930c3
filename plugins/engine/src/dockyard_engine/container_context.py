"""What the parts of the container service share: :class:`ContainerContext`.

The service (:mod:`dockyard_engine.containers`) is a facade over one collaborator per concern
(create, life cycle, exits, exec, logs and attach, health, file system). They share this one
small context and nothing else: the kernel (store, events, drivers, the other services), one
lock per container, the futures ``wait`` awaits, when each running container started, and the
set of background tasks. A collaborator that needs another gets it in its constructor.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidArgument, NotFound
from dockyard.model import Container, ContainerStatus, Image
from dockyard.specs.arch import RuntimeDriver

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.store import Store

log = logging.getLogger(__name__)

#: states in which the container holds what start took (rootfs mount, volumes, namespace)
RUNNING_STATES = (ContainerStatus.RUNNING, ContainerStatus.PAUSED, ContainerStatus.RESTARTING)
#: states in which the container's process exists
LIVE_STATES = (ContainerStatus.RUNNING, ContainerStatus.PAUSED)


class Watch:
    """Futures that ``wait`` conditions await for one container."""

    def __init__(self) -> None:
        loop = asyncio.get_running_loop()
        self.next_exit: asyncio.Future[int] = loop.create_future()
        self.removed: asyncio.Future[int] = loop.create_future()

    def exited(self, code: int) -> None:
        if not self.next_exit.done():
            self.next_exit.set_result(code)
        self.next_exit = asyncio.get_running_loop().create_future()

    def gone(self, code: int) -> None:
        self.exited(code)
        if not self.removed.done():
            self.removed.set_result(code)


class ContainerContext:
    """The kernel and the in-memory bookkeeping every part of the container service uses.

    ``started`` holds the event loop's time at each running container's start (its uptime
    decides the restart back-off; a healthcheck's start period counts from it).
    """

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel
        self.locks: dict[str, asyncio.Lock] = {}
        self.watches: dict[str, Watch] = {}
        self.started: dict[str, float] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closing = False

    # ------------------------------------------------------------------ bookkeeping
    @property
    def store(self) -> Store:
        return self.kernel.open_store()

    def lock(self, cid: str) -> asyncio.Lock:
        """The lock every state transition of container ``cid`` holds."""
        return self.locks.setdefault(cid, asyncio.Lock())

    def watch(self, cid: str) -> Watch:
        w = self.watches.get(cid)
        if w is None:
            w = self.watches[cid] = Watch()
        return w

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str = "") -> asyncio.Task[Any]:
        """A background task, cancelled when the service stops."""
        task = asyncio.get_running_loop().create_task(coro, name=name or None)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        task.add_done_callback(_report_failure)
        return task

    def mark_started(self, cid: str) -> None:
        self.started[cid] = asyncio.get_running_loop().time()

    def uptime(self, cid: str) -> float:
        """Seconds since the container's start (0 when unknown); forgets the start."""
        now = asyncio.get_running_loop().time()
        return now - self.started.pop(cid, now)

    async def cancel_tasks(self) -> None:
        self.closing = True
        for task in list(self.tasks):
            task.cancel()
        for task in list(self.tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - shutting down
                pass

    # ------------------------------------------------------------------ places and drivers
    @property
    def cdir_root(self) -> Path:
        return self.kernel.config.data_root / "containers"

    def cdir(self, cid: str) -> Path:
        """The container's own directory: its log and the /etc files the runtime binds."""
        return self.cdir_root / cid

    async def runtime(self, c: Container | None = None) -> RuntimeDriver:
        """The ``arch`` driver that runs ``c`` (the configured one for a new container)."""
        return await self.kernel.driver_ready("arch", (c.runtime if c and c.runtime else None))

    async def storage(self) -> Any:
        return await self.kernel.driver_ready("storage")

    # ------------------------------------------------------------------ other services
    @property
    def images(self) -> Any:
        return self.kernel.service("images")

    @property
    def volumes(self) -> Any:
        return self.kernel.service("volumes")

    @property
    def networks(self) -> Any | None:
        """The ``networks`` service, or None when it is not installed."""
        return self.kernel.service("networks") if self.kernel.has_service("networks") else None

    def image(self, ref: str) -> Image:
        """Resolve an image reference or ID (NotFound: ``No such image: <ref>``)."""
        return self.images.resolve(ref)

    # ------------------------------------------------------------------ store and events
    def put(self, c: Container) -> None:
        with self.store.transaction() as tx:
            tx.put(c)

    def emit(self, c: Container, action: str, **attrs: Any) -> None:
        """A ``container`` event with the container's labels, image and name as attributes."""
        out = dict(c.config.labels)
        out.update(image=c.config.image or c.image_id, name=c.name)
        out.update({k: str(v) for k, v in attrs.items()})
        self.kernel.emit("container", action, c.id, **out)

    def load(self, cid: str) -> Container:
        """The stored container by full ID (NotFound otherwise)."""
        return self.store.get(Container, cid)

    def get(self, ref: str) -> Container:
        """By full ID, name (with or without ``/``) or unique ID prefix; NotFound otherwise."""
        ref = (ref or "").strip()
        if not ref:
            raise NotFound("No such container: ")
        try:
            return self.store.get(Container, ref)
        except NotFound:
            pass
        c = self.store.by_name(Container, ref.lstrip("/"))
        if c is not None:
            return c
        if re.fullmatch(r"[0-9a-f]+", ref):
            found = self.store.by_prefix(Container, ref)
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                raise InvalidArgument(f"multiple IDs found with provided prefix: {ref}")
        raise NotFound(f"No such container: {ref}")

    def list(self) -> list[Container]:
        return self.store.list(Container)


def _report_failure(task: asyncio.Task[Any]) -> None:
    """A background task's failure goes to the log at once, by name (not when it is collected)."""
    if not task.cancelled() and task.exception() is not None:
        log.error("%s failed: %s", task.get_name(), task.exception(), exc_info=task.exception())
