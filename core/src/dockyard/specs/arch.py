"""Area ``arch``: per-platform container runtimes (Linux x86-64, ARM emulated, Windows HCS).

A runtime driver turns a prepared container (rootfs, mounts, network namespace, config) into a
running process tree on its platform and reports its state. Drivers register under the
entry-point group ``dockyard.drivers.arch``; the container service picks the driver whose
:meth:`RuntimeDriver.platforms` matches the image's platform.

.. versionadded:: 0.1
"""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
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


#: ``spec_amender(container, spec)``: mutate an OCI spec dict in place before it is written.
SpecAmender = Callable[["Container", dict[str, Any]], None]


@dataclass(frozen=True)
class LogRecord:
    """One record of a container's (or exec session's) output, as the runtime stored it.

    ``stream`` is ``stdout`` or ``stderr`` (a TTY's output is all ``stdout``); ``timestamp`` is
    RFC 3339 UTC with nanoseconds (``2026-11-24T04:51:36.211127879Z``); ``data`` holds the
    bytes the process wrote, newline included when the record ends a line.

    .. versionadded:: 0.1
    """

    stream: str
    timestamp: str
    data: bytes


class AttachStream(abc.ABC):
    """A live connection to a container's (or exec session's) stdio.

    Output read here is what the process writes *after* the stream was opened; open it
    before ``start()`` to miss nothing (``docker run`` attaches first). Stdin written before
    the process runs is buffered by the runtime.

    .. versionadded:: 0.1
    """

    @abc.abstractmethod
    async def read(self) -> tuple[str, bytes] | None:
        """The next chunk of output as ``(stream, data)`` (``stream`` is ``stdout`` or
        ``stderr``), or ``None`` once the process has exited and its output is drained."""

    @abc.abstractmethod
    async def write(self, data: bytes) -> None:
        """Send ``data`` to the process's stdin (a no-op when stdin is not attached)."""

    @abc.abstractmethod
    async def close_stdin(self) -> None:
        """Signal end of input (half-close): the process's stdin is closed when the container
        was created with ``stdin_once`` and no TTY (or for an exec session); output keeps
        flowing. A terminal keeps its input for the next attach, as in dockerd."""

    @abc.abstractmethod
    def close(self) -> None:
        """Drop the connection; the process keeps running. The end of input is signalled
        too: a ``stdin_once`` container without a TTY loses its stdin, as after
        :meth:`close_stdin`."""


@dataclass
class RuntimeCreateRequest:
    """Everything a runtime needs to create a container; paths are on the host.

    ``spec_amender``, when set, is called as ``spec_amender(container, spec)`` after a driver
    that produces OCI specs generated ``spec`` and before it hands it to the runtime; the
    container service passes a callable that runs the ``dockyard_runtime_spec`` hook. It may
    raise a :class:`dockyard.errors.DockyardError` to refuse the container (nothing is left).
    """

    container: Container
    image: Image
    rootfs: str  # mounted root filesystem
    mounts: list[Mount] = field(default_factory=list)  # resolved sources
    #: None = a fresh private namespace; "host" = the host's; else a namespace path to join
    #: (:meth:`RuntimeDriver.create_sandbox`'s key, or the namespace of another container)
    netns_path: str | None = None
    hosts_path: str = ""
    resolv_conf_path: str = ""
    hostname_path: str = ""
    log_path: str = ""
    runtime: str = ""  # OCI runtime name within the driver (crun, runc); "" = driver default
    spec_amender: SpecAmender | None = None
    #: namespaces to join instead of making new ones, by kind (``pid``, ``ipc``): the path of
    #: another container's (``--pid container:<id>``); ``host`` modes are read from the
    #: container's ``HostConfig``. (versionadded 0.3)
    namespaces: dict[str, str] = field(default_factory=dict)
    #: environment the engine adds for this run only, before the container's own (legacy
    #: links' variables); not part of ``Config.Env``. (versionadded 0.3)
    extra_env: list[str] = field(default_factory=list)


@dataclass
class RuntimeState:
    """What the runtime knows about a container (or exec session) it created.

    ``error`` is the runtime's message when the process could not be started at all (an
    exec'd command that does not exist: ``exit_code`` is then 126, or 127 for "not found").
    """

    status: str  # created | running | paused | stopped | unknown
    pid: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    finished_at: str = ""
    error: str = ""


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

    def resolve_runtime(self, name: str = "") -> str:
        """The OCI runtime a container asking for ``name`` ("" = none) will run under, as
        stored in its ``HostConfig.Runtime`` at create (so inspect tells the truth); raise
        InvalidArgument for an unknown name. Drivers with one runtime return ``name``.

        .. versionadded:: 0.3
        """
        return name

    async def expect_start(self) -> None:
        """A container is being created: its start is likely to follow within milliseconds
        (``docker run``). A driver may begin host work that does not depend on the container,
        so that its start finds it done (the Linux driver warms the kernel's cgroup attach
        lock: an RCU grace period of 7-15 ms otherwise inside the runtime's create; -5.3 ms
        per ``docker run --rm`` measured). It must return at once and must not fail; the
        default does nothing. The engine calls it at the beginning of each create.

        .. versionadded:: 0.3
        """

    async def create_sandbox(self, container_id: str) -> str:
        """Create the network sandbox a container's next run will live in.

        Called by the container service at each start of a container that gets a network
        namespace of its own (every network mode but ``host`` and ``container:<id>``), before
        the network service connects it to its networks and before :meth:`create`, which gets
        the result as ``RuntimeCreateRequest.netns_path``. On Linux: a persistent network
        namespace with loopback up, bound at a path named with the owner token; a leftover of
        an earlier run of the same container is replaced.

        :param container_id: the container the sandbox is for.
        :returns: the sandbox key, stored as ``ContainerState.sandbox_key``: a path network
            drivers can enter (``setns``) and the runtime can join.
        :raises DockyardError: when it cannot be made (nothing is left behind).

        Drivers that declare the ``sandbox`` capability implement it.

        .. versionadded:: 0.2
        """
        raise NotImplementedError(f"{self.info.name} cannot create network sandboxes")

    async def remove_sandbox(self, container_id: str, sandbox_key: str) -> None:
        """Remove a sandbox :meth:`create_sandbox` made, and what is still inside it.

        Called by the container service once the container's process has exited and its
        endpoints were disconnected, or when a start fails after the sandbox was made.
        ``sandbox_key`` is the key :meth:`create_sandbox` returned, read back from the store
        (possibly written by an earlier daemon). A sandbox that is already gone is not an
        error. Returns nothing.

        .. versionadded:: 0.2
        """
        raise NotImplementedError(f"{self.info.name} cannot remove network sandboxes")

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
        """Start an extra process in a running container; returns its state (pid). A command
        that cannot be started is not an exception: the state is ``stopped`` with exit code
        126 (127 when not found) and ``error`` set. The session stays until ``exec_delete``."""
        raise NotImplementedError(f"{self.info.name} cannot exec")

    async def exec_state(self, exec_id: str) -> RuntimeState:
        """State of an exec session (``exit_code`` and ``error`` once it ended). NotFound when
        the session does not exist."""
        raise NotImplementedError(f"{self.info.name} cannot exec")

    async def exec_wait(self, exec_id: str) -> RuntimeState:
        """Return when the exec'd process has exited (at once if it has)."""
        raise NotImplementedError(f"{self.info.name} cannot exec")

    async def exec_delete(self, exec_id: str) -> None:
        """Forget an exec session, killing its process if it still runs."""
        raise NotImplementedError(f"{self.info.name} cannot exec")

    def exec_logs(self, exec_id: str, follow: bool = False) -> AsyncIterator[LogRecord]:
        """The exec session's output records from its start; ``follow`` ends when it exits."""
        raise NotImplementedError(f"{self.info.name} cannot exec")

    def logs(self, container_id: str, follow: bool = False, tail: int | None = None) -> AsyncIterator[LogRecord]:
        """The container's stored output, oldest first, across restarts. With ``follow`` the
        iterator waits for new records and ends once the container's process has exited and
        everything it wrote was yielded. The log is opened by this call (NotFound for an
        unknown container), not at the first iteration: a container deleted before its records
        are read still yields them all. ``tail`` (``docker logs --tail``): only the last that
        many records, which a driver should find from the end of the log, not by reading it
        all (the caller keeps the last ones of what comes)."""
        raise NotImplementedError(f"{self.info.name} keeps no logs")

    async def attach(self, container_id: str, exec_id: str | None = None) -> AttachStream:
        """Connect to the stdio of a created or running container, or of exec session
        ``exec_id`` (whose output is delivered from its start)."""
        raise NotImplementedError(f"{self.info.name} cannot attach")

    async def resize(self, container_id: str, height: int, width: int, exec_id: str | None = None) -> None:
        """Resize the terminal of a TTY container (or of exec session ``exec_id``).
        Conflict when it has no terminal."""
        raise NotImplementedError(f"{self.info.name} cannot resize terminals")


@dataclass
class CheckpointRequest:
    """How to checkpoint a container, or restore one from its checkpoint (CRIU's options, as
    runc names them). Paths are on the host.

    ``image_dir`` holds CRIU's images: written by :meth:`CheckpointDriver.checkpoint` (the
    directory is made; it must not hold an earlier dump), read by
    :meth:`CheckpointDriver.restore`. ``work_dir`` takes CRIU's logs (``dump.log``,
    ``restore.log``) and work files; "" puts them in ``image_dir``. The resource flags let CRIU
    save and restore what it otherwise refuses: established TCP connections (the restored
    network namespace must own the same addresses), sockets whose peer is outside the
    container, file locks, and a controlling terminal (a TTY container needs ``shell_job``;
    drivers set it for one). ``page_server`` (``ADDR:PORT``) sends the memory pages to a CRIU
    page server instead of ``image_dir``; with ``lazy_pages`` the dump serves them from here
    on demand (post-copy), and the restore pulls them through ``criu lazy-pages``.
    ``manage_cgroups_mode`` is CRIU's (``soft``, ``full``, ``strict``, ``ignore``; "" = the
    runtime's default).

    .. versionadded:: 0.3
    """

    image_dir: str
    work_dir: str = ""
    leave_running: bool = False
    tcp_established: bool = True
    ext_unix_sockets: bool = True
    file_locks: bool = True
    shell_job: bool = False
    page_server: str = ""
    lazy_pages: bool = False
    manage_cgroups_mode: str = ""
    #: restore only: the network namespace to restore into, when it is not the one recorded in
    #: the checkpoint (a migration target's or an imported archive's new sandbox)
    netns_path: str = ""
    #: restore only: the runtime spec the checkpoint was taken with, when it was taken
    #: elsewhere (an archive's ``spec.dump``); CRIU restores the dumped mount tree, so a driver
    #: that writes runtime specs mirrors its mount points (stand-ins where it has no source)
    checkpointed_spec: dict[str, Any] | None = None


@dataclass
class CheckpointResult:
    """What a checkpoint wrote: where, how many bytes of images, how long the container was
    frozen (the dump's wall time; with ``leave_running`` it runs again after it), and the
    CRIU version that wrote them.

    .. versionadded:: 0.3
    """

    image_dir: str
    size: int = 0
    frozen_ms: float = 0.0
    criu_version: str = ""


class CheckpointDriver(RuntimeDriver):
    """Capability ``checkpoint`` of an ``arch`` driver: checkpoint a running container to
    images and restore a container from them (CRIU through the OCI runtime on Linux).

    The container service uses it for Docker's checkpoint API (``docker checkpoint create``,
    ``docker start --checkpoint``), for portable archives (``dockyard container checkpoint
    --export``) and for migration. Whether a given container can be checkpointed depends on
    the OCI runtime it runs under, so :meth:`checkpoint_support` answers per runtime.

    A checkpoint that does not leave the container running ends its process: the driver's
    :meth:`wait` returns as for any exit, and the caller (which knows it asked for it) must not
    treat that exit as a crash. The network namespace the container ran in is not touched:
    the caller keeps it for the restore (same addresses, so established connections resume).

    .. versionadded:: 0.3
    """

    @abc.abstractmethod
    def checkpoint_support(self, runtime: str = "") -> str:
        """Why containers of OCI runtime ``runtime`` ("" = the driver's default) cannot be
        checkpointed on this host, naming the fix; "" when they can. Cheap (the driver probes
        CRIU once, at setup)."""

    @abc.abstractmethod
    async def checkpoint(self, container_id: str, request: CheckpointRequest) -> CheckpointResult:
        """Dump the running container's process tree into ``request.image_dir``. Without
        ``leave_running`` its process ends once the dump succeeded. A failed dump leaves it
        running and raises (:class:`dockyard.errors.Unavailable` with CRIU's reason, the log's
        path in the message); Conflict when it is not running; InvalidArgument when its runtime
        cannot checkpoint."""

    @abc.abstractmethod
    async def restore(self, create: RuntimeCreateRequest, request: CheckpointRequest) -> RuntimeState:
        """Create the container as :meth:`create` would (``create`` says everything but the
        process) and restore its process tree from ``request.image_dir`` instead of starting
        it: returns the running state, as :meth:`start` does. The rootfs and mounts must be
        those of the checkpoint (same paths of open files). On failure nothing is left."""

    @abc.abstractmethod
    def checkpoint_spec(self, container_id: str) -> dict[str, Any]:
        """The runtime's own description of the container as it last ran (on Linux the OCI
        ``config.json``: a portable archive's ``spec.dump``); {} when it keeps none."""


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
