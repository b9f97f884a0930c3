"""The container service: the :class:`~dockyard.services.containers.Containers` interface over
one collaborator per concern.

- :class:`~dockyard_engine.container_create.Creation`: names, the image's config merged into
  the request, the mount plan; ``create``;
- :class:`~dockyard_engine.container_setup.Setup`: what a run takes and gives back (rootfs,
  volumes, network namespace and endpoints, /etc files);
- :class:`~dockyard_engine.container_lifecycle.Lifecycle`: start, stop, kill, restart, pause,
  remove, prune, wait, rename, update, and live-restore at daemon start;
- :class:`~dockyard_engine.container_exits.Exits` (the life cycle's): monitors, exit records,
  restart policies, ``AutoRemove``;
- :class:`~dockyard_engine.container_exec.Execs`: ``docker exec`` sessions;
- :class:`~dockyard_engine.container_io.ContainerIO`: logs, attach, resize, top, stats;
- :class:`~dockyard_engine.health.HealthChecks`: healthcheck probes and ``State.Health``;
- :class:`~dockyard_engine.container_files.ContainerFiles`: ``docker cp``, diff, export, commit.

They share one :class:`~dockyard_engine.container_context.ContainerContext` (the kernel, one
lock per container, the futures ``wait`` awaits, the background tasks) and get each other
through their constructors; this class only builds them and forwards each call.

Collaborators, asked by name through the kernel: the ``images`` service (resolving image
references), the ``volumes`` service, the ``networks`` service (optional), the ``storage``
driver (rootfs layers keyed by container ID on the image's top layer) and the ``arch`` driver.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any, BinaryIO

from dockyard.model import Container, ContainerStatus
from dockyard.services import Service
from dockyard.services.containers import (
    Checkpoint,
    CheckpointCreate,
    CheckpointImport,
    ContainerCreate,
    ExecSession,
    LogOptions,
    PathStat,
)
from dockyard.specs.arch import AttachStream
from dockyard_engine.container_archive import CheckpointArchives
from dockyard_engine.container_checkpoint import Checkpoints
from dockyard_engine.container_context import ContainerContext
from dockyard_engine.container_create import Creation, merge_env
from dockyard_engine.container_exec import Execs
from dockyard_engine.container_files import ContainerFiles
from dockyard_engine.container_io import ContainerIO
from dockyard_engine.container_lifecycle import Lifecycle, parse_signal
from dockyard_engine.container_setup import Setup
from dockyard_engine.health import HealthChecks

if TYPE_CHECKING:
    from dockyard.kernel import Kernel

__all__ = ["ContainerService", "merge_env", "parse_signal"]


class ContainerService(Service):
    """The local engine's ``containers`` service (a facade: see the module docstring)."""

    name = "containers"

    def __init__(self, kernel: Kernel) -> None:
        super().__init__(kernel)
        self.ctx = ctx = ContainerContext(kernel)
        self.execs = Execs(ctx)
        self.health = HealthChecks(ctx, exec_run=self.execs.run)
        self.io = ContainerIO(ctx)
        self.files = ContainerFiles(ctx)
        self.creation = Creation(ctx)
        self.setup = Setup(ctx)
        self.lifecycle = Lifecycle(ctx, self.creation, self.setup, self.health, self.io, self.execs)
        self.checkpoints_ = Checkpoints(ctx, self.setup, self.health, self.lifecycle)
        self.archives = CheckpointArchives(ctx, self.creation, self.checkpoints_)

    # ------------------------------------------------------------------ Service
    async def start(self) -> None:
        """Reconcile at daemon start (live-restore)."""
        await self.lifecycle.restore()

    async def stop(self) -> None:
        """Stop watching; containers keep running (live-restore)."""
        await self.ctx.cancel_tasks()

    # ------------------------------------------------------------------ reading
    def get(self, ref: str) -> Container:
        return self.ctx.get(ref)

    def list(self) -> list[Container]:
        return self.ctx.list()

    def counts(self) -> dict[str, int]:
        """``{"running": n, "paused": n, "stopped": n}``."""
        out = {"running": 0, "paused": 0, "stopped": 0}
        for c in self.list():
            if c.state.status is ContainerStatus.RUNNING:
                out["running"] += 1
            elif c.state.status is ContainerStatus.PAUSED:
                out["paused"] += 1
            else:
                out["stopped"] += 1
        return out

    def _emit(self, c: Container, action: str, **attrs: Any) -> None:
        self.ctx.emit(c, action, **attrs)

    def detached(self, ref: str) -> None:
        self.ctx.emit(self.get(ref), "detach")

    # ------------------------------------------------------------------ life cycle
    async def create(self, req: ContainerCreate) -> Container:
        return await self.creation.create(req)

    async def start_container(self, ref: str) -> Container:
        return await self.lifecycle.start_container(ref)

    async def stop_container(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None:
        await self.lifecycle.stop_container(ref, timeout, sig)

    # ------------------------------------------------------------------ checkpoint and restore
    async def checkpoint(self, ref: str, req: CheckpointCreate) -> Checkpoint:
        return await self.checkpoints_.create(ref, req)

    def checkpoints(self, ref: str, directory: str = "") -> list[Checkpoint]:
        return self.checkpoints_.list(ref, directory)

    async def checkpoint_remove(self, ref: str, name: str, directory: str = "") -> None:
        await self.checkpoints_.remove(ref, name, directory)

    async def restore(self, ref: str, name: str, directory: str = "") -> Container:
        return await self.checkpoints_.restore(ref, name, directory)

    async def checkpoint_export(self, ref: str, out_path: str, req: CheckpointCreate) -> Checkpoint:
        return await self.archives.export(ref, out_path, req)

    async def checkpoint_import(self, req: CheckpointImport) -> Container:
        return await self.archives.import_(req)

    async def kill(self, ref: str, sig: str | None = None) -> None:
        await self.lifecycle.kill(ref, sig)

    async def restart(self, ref: str, timeout: int | None = None) -> None:
        await self.lifecycle.restart(ref, timeout)

    async def pause(self, ref: str) -> None:
        await self.lifecycle.pause(ref)

    async def unpause(self, ref: str) -> None:
        await self.lifecycle.unpause(ref)

    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None:
        await self.lifecycle.remove(ref, force, volumes)

    async def prune(self, until: float | None = None, labels: list[str] | None = None) -> tuple[list[str], int]:
        return await self.lifecycle.prune(until, labels)

    async def wait(self, ref: str, condition: str = "not-running") -> int:
        return await self.lifecycle.wait(ref, condition)

    async def rename(self, ref: str, new_name: str) -> None:
        await self.lifecycle.rename(ref, new_name)

    async def update(self, ref: str, resources: dict[str, Any], restart_policy: Any = None) -> list[str]:
        return await self.lifecycle.update(ref, resources, restart_policy)

    async def remove_link(self, link_name: str) -> None:
        """``docker rm --link /<parent>/<alias>``: the parent forgets the link (dockerd's
        ``rmLink``; a running parent keeps the variables and hosts line it started with)."""
        from dockyard.errors import Conflict, NotFound
        from dockyard_engine import links

        parent, _, alias = link_name.strip("/").rpartition("/")
        if not parent or not alias:
            raise Conflict("Conflict, cannot remove the default link name of the container")
        try:
            c = self.ctx.get(parent)
        except NotFound:
            raise NotFound(f"Cannot get parent /{parent} for link name /{parent}/{alias}") from None
        async with self.ctx.lock(c.id):
            c = self.ctx.load(c.id)
            c.host_config.links = links.without(c, f"/{parent}/{alias}")
            self.ctx.put(c)

    # ------------------------------------------------------------------ processes and resources
    async def top(self, ref: str, ps_args: str = "") -> dict[str, Any]:
        return await self.io.top(ref, ps_args)

    async def stats(self, ref: str, previous: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.io.stats(ref, previous)

    def stats_stream(self, ref: str, stream: bool = True, interval: float = 1.0) -> AsyncIterator[dict[str, Any]]:
        return self.io.stats_stream(ref, stream, interval)

    # ------------------------------------------------------------------ stdio
    def check_logs_readable(self, c: Container) -> None:
        self.io.check_logs_readable(c)

    def logs(self, ref: str, opts: LogOptions) -> AsyncIterator[tuple[str, bytes]]:
        return self.io.logs(ref, opts)

    async def open_logs(self, ref: str, opts: LogOptions) -> AsyncGenerator[tuple[str, bytes], None]:
        return await self.io.open_logs(ref, opts)

    async def attach(self, ref: str) -> tuple[Container, AttachStream | asyncio.Future[AttachStream]]:
        return await self.io.attach(ref)

    def cancel_attach(self, cid: str, fut: asyncio.Future[AttachStream]) -> None:
        self.io.cancel_attach(cid, fut)

    async def resize(self, ref: str, height: int, width: int) -> None:
        await self.io.resize(ref, height, width)

    # ------------------------------------------------------------------ exec
    def exec_create(self, ref: str, cmd: list[str], *, tty: bool = False, attach_stdin: bool = False,
                    attach_stdout: bool = True, attach_stderr: bool = True, env: list[str] | None = None,
                    user: str = "", working_dir: str = "", privileged: bool = False, detach_keys: str = "",
                    internal: bool = False) -> ExecSession:
        return self.execs.create(ref, cmd, tty=tty, attach_stdin=attach_stdin, attach_stdout=attach_stdout,
                                 attach_stderr=attach_stderr, env=env, user=user, working_dir=working_dir,
                                 privileged=privileged, detach_keys=detach_keys, internal=internal)

    def exec_get(self, exec_id: str) -> ExecSession:
        return self.execs.get(exec_id)

    async def exec_start(self, exec_id: str, attach: bool = True) -> tuple[ExecSession, AttachStream | None]:
        return await self.execs.start(exec_id, attach)

    async def exec_resize(self, exec_id: str, height: int, width: int) -> None:
        await self.execs.resize(exec_id, height, width)

    async def exec_run(self, ref: str, cmd: list[str], timeout: float | None = None,
                       internal: bool = False) -> tuple[int, str]:
        """Run a command to completion; (exit code, combined output). TimeoutError kills it."""
        return await self.execs.run(ref, cmd, timeout, internal)

    # ------------------------------------------------------------------ file system
    def rootfs(self, ref: str) -> AbstractAsyncContextManager[tuple[Container, str]]:
        """The container's root file system, mounted for the duration of the context."""
        return self.files.rootfs(ref)

    async def archive_stat(self, ref: str, path: str) -> PathStat:
        return await self.files.archive_stat(ref, path)

    async def archive_get(self, ref: str, path: str, out: BinaryIO) -> PathStat:
        return await self.files.archive_get(ref, path, out)

    async def archive_put(self, ref: str, path: str, tar_path: str) -> None:
        await self.files.archive_put(ref, path, tar_path)

    async def changes(self, ref: str) -> list[dict[str, Any]]:
        return await self.files.changes(ref)

    async def export(self, ref: str, out_path: str) -> None:
        await self.files.export(ref, out_path)

    async def commit(self, ref: str, repo: str = "", tag: str = "", comment: str = "", author: str = "",
                     changes: list[str] | None = None, pause: bool = True,
                     config: dict[str, Any] | None = None) -> str:
        return await self.files.commit(ref, repo, tag, comment, author, changes, pause, config)
