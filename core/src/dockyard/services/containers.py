"""The ``containers`` service: its typed interface and the requests that cross the seam.

The API front builds a :class:`ContainerCreate` from Docker's JSON and calls
:meth:`Containers.create`; a local engine or a cluster manager implements :class:`Containers`.

.. versionadded:: 0.2
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Protocol

from dockyard.model import Container, ContainerConfig, EndpointSettings, HostConfig
from dockyard.specs.arch import AttachStream


@dataclass
class ContainerCreate:
    """A create request in the core's terms (the API front builds it from the JSON body).

    ``entrypoint``/``cmd`` are None when the request did not set them (the image's apply).
    ``body`` is the API's own request (``versionadded`` 0.2: the swarm manager's passthrough).
    """

    config: ContainerConfig
    host_config: HostConfig = field(default_factory=HostConfig)
    name: str = ""
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    networks: dict[str, EndpointSettings] = field(default_factory=dict)  # EndpointsConfig
    #: the request as the front received it (the Docker JSON body), or None: a swarm manager
    #: forwards it to the node it placed the container on, so a node gets what the client sent
    body: dict[str, Any] | None = None
    #: the ``platform`` query parameter (``docker create --platform``), normalized
    #: (``linux/arm64``); "" = the image's own. An image for another platform is a 404 with
    #: dockerd's words, so the client pulls that platform (versionadded 0.3)
    platform: str = ""


@dataclass
class ExecSession:
    """One ``docker exec`` (kept in memory, as dockerd does)."""

    id: str
    container_id: str
    cmd: list[str]
    tty: bool = False
    attach_stdin: bool = False
    attach_stdout: bool = True
    attach_stderr: bool = True
    env: list[str] = field(default_factory=list)
    user: str = ""
    working_dir: str = ""
    privileged: bool = False
    detach_keys: str = ""
    running: bool = False
    started: bool = False
    exit_code: int | None = None
    pid: int = 0
    error: str = ""
    internal: bool = False  # a healthcheck probe: no events
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class LogOptions:
    stdout: bool = True
    stderr: bool = True
    follow: bool = False
    tail: int | None = None  # None = all
    since: float = 0.0  # unix seconds; 0 = from the start
    until: float = 0.0  # 0 = no end
    timestamps: bool = False



@dataclass(frozen=True)
class PathStat:
    """What ``docker cp`` reports of a path in a container (Docker's ``ContainerPathStat``)."""

    name: str
    size: int
    mode: int  # Go's os.FileMode bits
    mtime: str  # RFC 3339
    link_target: str = ""

    def to_docker(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "mode": self.mode, "mtime": self.mtime,
                "linkTarget": self.link_target}


@dataclass
class CheckpointCreate:
    """A checkpoint request: Docker's ``CheckpointCreateOptions`` (``CheckpointID``,
    ``CheckpointDir``, ``Exit`` = not ``leave_running``) and CRIU's resource options.

    ``directory`` "" keeps the checkpoint with the container (``<data-root>/containers/<id>/
    checkpoints/<name>``); otherwise it is ``<directory>/<name>``, as dockerd's
    ``--checkpoint-dir``. ``page_server``/``lazy_pages`` are for migration (see
    :class:`dockyard.specs.arch.CheckpointRequest`).

    .. versionadded:: 0.3
    """

    name: str
    directory: str = ""
    leave_running: bool = False
    tcp_established: bool = True
    ext_unix_sockets: bool = True
    file_locks: bool = True
    page_server: str = ""
    lazy_pages: bool = False
    #: export only: leave the named volumes out (podman's ``--ignore-volumes``; a migration
    #: streams them itself), the archive's compression (``gzip`` or ``none``), and keep the dump
    #: as the container's checkpoint ``name`` (hard links), so ``restore(ref, name)`` resumes it
    ignore_volumes: bool = False
    compression: str = "gzip"
    keep: bool = False


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint on disk: its ``name``, the image directory ``path``, and for one just
    written its size in bytes and how long the container was frozen.

    .. versionadded:: 0.3
    """

    name: str
    path: str
    size: int = 0
    frozen_ms: float = 0.0
    criu_version: str = ""


@dataclass
class CheckpointImport:
    """``dockyard container restore --import``: a portable archive (podman's and the
    kubelet's layout, see :mod:`dockyard.checkpoints`) restored as a new container.

    ``name`` "" keeps the archive's name; ``ignore_static_ip`` gives the container fresh
    addresses instead of the archive's (podman's flag of the same name).

    .. versionadded:: 0.3
    """

    archive_path: str
    name: str = ""
    ignore_static_ip: bool = False
    ignore_static_mac: bool = False
    ignore_volumes: bool = False
    #: restore the memory lazily from this CRIU page server (``ADDR:PORT``; a migration's
    #: source), post-copy; "" = every page is in the archive
    page_server: str = ""
    #: in two steps (a migration's target, while the source still runs): ``prepare`` makes the
    #: container from ``archive_path``, a directory holding only the documents so far
    #: (``config.dump``, ``network.status``), with its network sandbox and endpoints when every
    #: network is local in scope, and returns it created; the second call names it in
    #: ``container`` once the directory holds the whole archive, and restores it. Removing a
    #: prepared container releases what it holds. (versionadded 0.3)
    prepare: bool = False
    container: str = ""


class Containers(Protocol):
    """What the fronts, the CLI and the builder may ask of the ``containers`` service.

    ``ref`` is a full ID, a unique ID prefix or a name (with or without ``/``); an unknown one
    raises :class:`~dockyard.errors.NotFound`. State-machine violations raise
    :class:`~dockyard.errors.Conflict` (or ``NotModified`` for a no-op start/stop).
    """

    # -- reading
    def get(self, ref: str) -> Container: ...
    def list(self) -> list[Container]: ...
    def counts(self) -> dict[str, int]:
        """``{"running": n, "paused": n, "stopped": n}``."""
        ...

    # -- life cycle
    async def create(self, req: ContainerCreate) -> Container: ...
    async def start_container(self, ref: str) -> Container: ...
    async def stop_container(self, ref: str, timeout: int | None = None, sig: str | None = None) -> None: ...
    async def kill(self, ref: str, sig: str | None = None) -> None: ...
    async def restart(self, ref: str, timeout: int | None = None) -> None: ...
    async def pause(self, ref: str) -> None: ...
    async def unpause(self, ref: str) -> None: ...
    async def remove(self, ref: str, force: bool = False, volumes: bool = False) -> None: ...
    async def prune(self, until: float | None = None, labels: list[str] | None = None) -> tuple[list[str], int]: ...
    async def wait(self, ref: str, condition: str = "not-running") -> int: ...
    # -- checkpoint and restore (versionadded 0.3; an engine whose runtime cannot checkpoint
    #    raises InvalidArgument naming the fix)
    async def checkpoint(self, ref: str, req: CheckpointCreate) -> Checkpoint:
        """Checkpoint a running container; without ``leave_running`` it stops (exited, its
        network kept for the restore: no ``die``, restart policy or auto-remove)."""
        ...

    def checkpoints(self, ref: str, directory: str = "") -> list[Checkpoint]: ...
    async def checkpoint_remove(self, ref: str, name: str, directory: str = "") -> None: ...
    async def restore(self, ref: str, name: str, directory: str = "") -> Container:
        """``docker start --checkpoint NAME``: start the container from its checkpoint."""
        ...

    async def checkpoint_export(self, ref: str, out_path: str, req: CheckpointCreate) -> Checkpoint:
        """Checkpoint into a portable archive at ``out_path`` (``req.name`` names the dump)."""
        ...

    async def checkpoint_import(self, req: CheckpointImport) -> Container:
        """Create a container from a portable archive and restore it (running on return)."""
        ...

    async def rename(self, ref: str, new_name: str) -> None: ...
    async def update(self, ref: str, resources: dict[str, Any], restart_policy: Any = None) -> list[str]: ...
    async def remove_link(self, link_name: str) -> None:
        """Forget the legacy link ``/<parent>/<alias>`` (``docker rm --link``).

        .. versionadded:: 0.3
        """
        ...

    # -- processes and resources
    async def top(self, ref: str, ps_args: str = "") -> dict[str, Any]: ...
    async def stats(self, ref: str, previous: dict[str, Any] | None = None) -> dict[str, Any]: ...
    def stats_stream(self, ref: str, stream: bool = True, interval: float = 1.0) -> AsyncIterator[dict[str, Any]]: ...

    # -- stdio
    def check_logs_readable(self, c: Container) -> None: ...
    def logs(self, ref: str, opts: LogOptions) -> AsyncIterator[tuple[str, bytes]]: ...
    async def open_logs(self, ref: str, opts: LogOptions) -> AsyncGenerator[tuple[str, bytes], None]:
        """:meth:`logs` with the request checked and the log opened before it returns: an API
        front answers (sends its headers) only then, so a client that removes the container
        before it reads the stream (docker-py's ``containers.run(remove=True)``) still gets
        everything the container wrote."""
        ...
    async def attach(self, ref: str) -> tuple[Container, AttachStream | asyncio.Future[AttachStream]]: ...
    def cancel_attach(self, cid: str, fut: asyncio.Future[AttachStream]) -> None: ...
    def detached(self, ref: str) -> None:
        """The client left an attach with its detach keys (Docker's ``detach`` event)."""
        ...
    async def resize(self, ref: str, height: int, width: int) -> None: ...

    # -- exec
    def exec_create(self, ref: str, cmd: list[str], *, tty: bool = False, attach_stdin: bool = False,
                    attach_stdout: bool = True, attach_stderr: bool = True, env: list[str] | None = None,
                    user: str = "", working_dir: str = "", privileged: bool = False, detach_keys: str = "",
                    internal: bool = False) -> ExecSession: ...
    def exec_get(self, exec_id: str) -> ExecSession: ...
    async def exec_start(self, exec_id: str, attach: bool = True) -> tuple[ExecSession, AttachStream | None]: ...
    async def exec_resize(self, exec_id: str, height: int, width: int) -> None: ...

    # -- file system
    def rootfs(self, ref: str) -> AbstractAsyncContextManager[tuple[Container, str]]:
        """The container's root file system, mounted for the duration of the context."""
        ...
    async def archive_stat(self, ref: str, path: str) -> PathStat: ...
    async def archive_get(self, ref: str, path: str, out: BinaryIO) -> PathStat:
        """Write ``path`` (a file or a tree) as a tar to ``out``; ``docker cp CONTAINER:path``."""
        ...
    async def archive_put(self, ref: str, path: str, tar_path: str) -> None:
        """Extract the tar at ``tar_path`` into directory ``path``; ``docker cp - CONTAINER:path``."""
        ...
    async def changes(self, ref: str) -> list[dict[str, Any]]: ...
    async def export(self, ref: str, out_path: str) -> None: ...
    async def commit(self, ref: str, repo: str = "", tag: str = "", comment: str = "", author: str = "",
                     changes: list[str] | None = None, pause: bool = True,
                     config: dict[str, Any] | None = None) -> str: ...


__all__ = ["ContainerCreate", "Containers", "ExecSession", "LogOptions", "PathStat"]
