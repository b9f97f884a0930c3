"""Area ``arch``: per-platform container runtimes (Linux x86-64, ARM emulated, Windows HCS).

A runtime driver turns a prepared container (rootfs, mounts, network namespace, config) into a
running process tree on its platform and reports its state. Drivers register under the
entry-point group ``dockyard.drivers.arch``; the container service picks the driver whose
:meth:`RuntimeDriver.platforms` matches the image's platform.

.. versionadded:: 0.1
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dockyard.specs._base import Driver, hookspec

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.model import Container, Image, Mount


@dataclass(frozen=True)
class Platform:
    """An OCI platform: ``os/architecture[/variant]``; ``emulated`` when not native."""

    os: str
    architecture: str
    variant: str = ""
    emulated: bool = False

    def __str__(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)


@dataclass
class RuntimeCreateRequest:
    """Everything a runtime needs to create a container; paths are on the host."""

    container: Container
    image: Image
    rootfs: str  # mounted root filesystem
    mounts: list[Mount] = field(default_factory=list)  # resolved sources
    netns_path: str | None = None  # None = a fresh private namespace; "host" = host's
    hosts_path: str = ""
    resolv_conf_path: str = ""
    hostname_path: str = ""
    log_path: str = ""
    runtime: str = ""  # OCI runtime name within the driver (crun, runc); "" = driver default


@dataclass
class RuntimeState:
    """What the runtime knows about a container it created."""

    status: str  # created | running | paused | stopped | unknown
    pid: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    finished_at: str = ""


@dataclass
class ExecRequest:
    container_id: str
    exec_id: str
    cmd: list[str]
    env: list[str] = field(default_factory=list)
    user: str = ""
    working_dir: str = ""
    tty: bool = False
    privileged: bool = False
    stdin: bool = False


class RuntimeDriver(Driver):
    """The ABC of an ``arch`` driver. Containers are addressed by the container ID."""

    @abc.abstractmethod
    def platforms(self) -> list[Platform]:
        """Platforms this driver runs on this host (native first, then emulated)."""

    @abc.abstractmethod
    async def create(self, request: RuntimeCreateRequest) -> RuntimeState:
        """Create the container (bundle, monitor) without starting the user process."""

    @abc.abstractmethod
    async def start(self, container_id: str) -> RuntimeState:
        """Start the user process; returns the running state with its PID."""

    @abc.abstractmethod
    async def kill(self, container_id: str, signal: int) -> None:
        """Send ``signal`` to the container's init process."""

    @abc.abstractmethod
    async def state(self, container_id: str) -> RuntimeState:
        """The current state; ``exit_code`` is set once the process has exited."""

    @abc.abstractmethod
    async def wait(self, container_id: str) -> RuntimeState:
        """Return when the container's process has exited (at once if it already has)."""

    @abc.abstractmethod
    async def delete(self, container_id: str, force: bool = False) -> None:
        """Remove the runtime's record, monitor and bundle. ``force`` kills first."""

    @abc.abstractmethod
    async def list(self) -> list[str]:
        """IDs of the containers this driver holds on this host (for reconciliation)."""

    async def pause(self, container_id: str) -> None:
        """Freeze every process of the container (cgroup freezer)."""
        raise NotImplementedError(f"{self.info.name} cannot pause containers")

    async def resume(self, container_id: str) -> None:
        """Thaw a paused container."""
        raise NotImplementedError(f"{self.info.name} cannot resume containers")

    async def update(self, container_id: str, resources: dict[str, Any]) -> None:
        """Change resource limits of a running container (``HostConfig`` resource fields)."""
        raise NotImplementedError(f"{self.info.name} cannot update resources")

    async def stats(self, container_id: str) -> dict[str, Any]:
        """Resource usage in the Docker stats shape (cpu_stats, memory_stats, pids_stats...)."""
        raise NotImplementedError(f"{self.info.name} reports no stats")

    async def top(self, container_id: str) -> list[int]:
        """PIDs of every process in the container (host PID namespace)."""
        raise NotImplementedError(f"{self.info.name} cannot list processes")

    async def exec(self, request: ExecRequest) -> RuntimeState:
        """Start an extra process in a running container; returns its state (pid)."""
        raise NotImplementedError(f"{self.info.name} cannot exec")

    def logs(self, container_id: str, follow: bool = False) -> AsyncIterator[bytes]:
        """The container's log records as the driver wrote them (driver-defined framing)."""
        raise NotImplementedError(f"{self.info.name} keeps no logs")


class ArchSpecs:
    """Hook specifications of the ``arch`` area."""

    @hookspec
    def dockyard_runtime_spec(self, kernel: Kernel, container: Container, spec: dict[str, Any]) -> None:
        """Amend the OCI runtime spec (``config.json`` as a dict) before it is handed over.

        Called by runtime drivers that produce OCI specs, for every plugin, in registration
        order (last registered first). Mutate ``spec`` in place; return nothing. Raise a
        :class:`dockyard.errors.DockyardError` to refuse the container.

        .. versionadded:: 0.1
        """
