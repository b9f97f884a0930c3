"""Checkpoint and restore: Docker's checkpoint API over the runtime driver's ``checkpoint``
capability (:class:`~dockyard.specs.arch.CheckpointDriver`).

A checkpoint that stops the container is not a crash. Before the dump, the image directory is
written into ``ContainerState.checkpoint``; the dump runs under the container's lock, and once
the runtime reports the exit it caused, the run is recorded by :func:`record_checkpointed`:
exited (code 0), a ``checkpoint`` event instead of ``die``, no restart policy, no auto-remove,
the rootfs and volumes released but the network sandbox and its endpoints kept, so the
restore finds the same addresses and established TCP connections resume (CRIU's network lock
keeps the namespace silent meanwhile: peers retransmit, nobody answers with a reset). The
monitor of that run, when it gets the lock, finds the container no longer running and records
nothing. A daemon killed between the dump and the record finds the exit at its next start;
:class:`~dockyard_engine.container_exits.Exits` sees ``checkpoint`` set with a complete image
and records it the same way.

A start from a checkpoint (:meth:`Checkpoints.restore`) reuses the kept sandbox; a plain start
of a checkpointed container gives it back and connects afresh; removal releases it as always.
Checkpoints live in ``<container dir>/checkpoints/<name>`` (gone with the container) or in
``<dir>/<name>`` for dockerd's ``--checkpoint-dir``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.model import Container, ContainerStatus
from dockyard.services.containers import Checkpoint, CheckpointCreate
from dockyard.specs.arch import CheckpointDriver, CheckpointRequest
from dockyard_engine.container_context import ContainerContext
from dockyard_engine.container_setup import Setup

if TYPE_CHECKING:
    from dockyard_engine.container_lifecycle import Lifecycle
    from dockyard_engine.health import HealthChecks

#: dockerd's rule for checkpoint names
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
DUMP_DONE = "inventory.img"  # CRIU writes it last: its presence means a complete dump


def complete(image_dir: str | Path) -> bool:
    return bool(image_dir) and (Path(image_dir) / DUMP_DONE).exists()


async def record_checkpointed(ctx: ContainerContext, setup: Setup, health: HealthChecks, c: Container,
                              finished_at: str) -> None:
    """Record the end of a run a checkpoint stopped (the caller holds the container's lock)."""
    from dockyard.model import now_iso

    health.stop(c.id)
    ctx.uptime(c.id)
    c.state.status = ContainerStatus.EXITED
    c.state.exit_code = 0
    c.state.pid = 0
    c.state.finished_at = finished_at or now_iso()
    ctx.put(c)
    ctx.emit(c, "checkpoint")
    ctx.watch(c.id).exited(0)
    await release_keeping_network(ctx, setup, c)


async def release_keeping_network(ctx: ContainerContext, setup: Setup, c: Container) -> None:
    """What :meth:`Setup.release` gives back, except the network sandbox and endpoints."""
    drv = await ctx.storage()
    with contextlib.suppress(Exception):
        await drv.unmount(c.id)
    await setup.unmount_volumes(c)
    await setup.release_shm(c)


class Checkpoints:
    """Create, list, remove checkpoints and start containers from them."""

    def __init__(self, ctx: ContainerContext, setup: Setup, health: HealthChecks, lifecycle: Lifecycle) -> None:
        self.ctx = ctx
        self.setup = setup
        self.health = health
        self.lifecycle = lifecycle

    # ------------------------------------------------------------------ places
    def directory(self, c: Container, directory: str = "") -> Path:
        if directory:
            if not Path(directory).is_absolute():
                raise InvalidArgument(f"checkpoint directory must be an absolute path: {directory}")
            return Path(directory)
        return self.ctx.cdir(c.id) / "checkpoints"

    def path(self, c: Container, name: str, directory: str = "") -> Path:
        if not NAME.match(name or ""):
            raise InvalidArgument(f"Invalid checkpoint ID ({name}), only {NAME.pattern[1:-1]} are allowed")
        return self.directory(c, directory) / name

    async def driver(self, c: Container) -> CheckpointDriver:
        """The container's runtime driver, when it can checkpoint this container (else
        InvalidArgument naming why and the fix)."""
        rt = await self.ctx.runtime(c)
        if not isinstance(rt, CheckpointDriver):
            raise InvalidArgument(f"the {rt.info.name!r} runtime driver cannot checkpoint containers")
        problem = rt.checkpoint_support(c.host_config.runtime)
        if problem:
            raise InvalidArgument(f"cannot checkpoint container {c.id[:12]}: {problem}")
        return rt

    # ------------------------------------------------------------------ create, list, remove
    async def create(self, ref: str, req: CheckpointCreate) -> Checkpoint:
        c = self.ctx.get(ref)
        path = self.path(c, req.name, req.directory)
        async with self.ctx.lock(c.id):
            c = self.ctx.load(c.id)
            return await self.dump_locked(c, path, req)

    async def dump_locked(self, c: Container, path: Path, req: CheckpointCreate) -> Checkpoint:
        """Checkpoint ``c`` into ``path`` (the caller holds its lock)."""
        ctx = self.ctx
        if c.state.status is not ContainerStatus.RUNNING:
            raise Conflict(f"Container {c.id} is not running" if c.state.status is not ContainerStatus.PAUSED
                           else f"Container {c.id} is paused: unpause it before checkpointing")
        rt = await self.driver(c)
        if path.exists():
            raise Conflict(f"checkpoint {path.name} already exists for container {c.id}")
        if not req.leave_running:
            c.state.checkpoint = str(path)
            ctx.put(c)
        request = CheckpointRequest(image_dir=str(path), leave_running=req.leave_running,
                                    tcp_established=req.tcp_established, ext_unix_sockets=req.ext_unix_sockets,
                                    file_locks=req.file_locks, page_server=req.page_server,
                                    lazy_pages=req.lazy_pages)
        try:
            result = await rt.checkpoint(c.id, request)
        except BaseException:
            if not req.leave_running:
                c.state.checkpoint = ""
                ctx.put(c)
            await asyncio.to_thread(shutil.rmtree, path, True)
            raise
        done = Checkpoint(name=path.name, path=str(path), size=result.size, frozen_ms=result.frozen_ms,
                          criu_version=result.criu_version)
        if req.leave_running:
            ctx.emit(c, "checkpoint")
            return done
        try:
            if req.lazy_pages:  # the process ends once the target pulled every page: record it now
                raise TimeoutError
            st = await asyncio.wait_for(rt.wait(c.id), 30)
            finished = st.finished_at
        except (TimeoutError, NotFound):
            finished = ""
        await record_checkpointed(ctx, self.setup, self.health, c, finished)
        return done

    def list(self, ref: str, directory: str = "") -> list[Checkpoint]:
        c = self.ctx.get(ref)
        base = self.directory(c, directory)
        if not base.is_dir():
            return []
        return [Checkpoint(name=p.name, path=str(p)) for p in sorted(base.iterdir())
                if p.is_dir() and complete(p)]

    async def remove(self, ref: str, name: str, directory: str = "") -> None:
        c = self.ctx.get(ref)
        path = self.path(c, name, directory)
        if not path.is_dir():
            raise NotFound(f"checkpoint {name} does not exist for container {c.id}")
        # the checkpoint that stopped the container may go too: a plain start still works
        await asyncio.to_thread(shutil.rmtree, path)

    # ------------------------------------------------------------------ restore
    async def restore(self, ref: str, name: str, directory: str = "") -> Container:
        c = self.ctx.get(ref)
        path = self.path(c, name, directory)
        if not complete(path):
            raise NotFound(f"checkpoint {name} does not exist for container {c.id}")
        await self.driver(c)
        return await self.lifecycle.start_container(c.id, restore=CheckpointRequest(image_dir=str(path)))
