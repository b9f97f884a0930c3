"""Area ``supervisor``: the host's process supervisor runs dockyardd and containers as services.

A backend knows one supervisor (systemd, sysV init, upstart, runit, supervisord; a third
party's s6 or OpenRC): whether the host runs it, and the files that make dockyardd or a
container one of its services. Backends are feature plugins returning
:class:`SupervisorBackend` descriptors from :meth:`SupervisorSpecs.dockyard_supervisors`; none
imports another or the command that uses them. The kernel collects them
(:meth:`dockyard.kernel.Kernel.supervisors`, a :class:`Supervisors`) and hands that collection
to every driver as a cross-area need (``self.context.need(Supervisors)``), so a provisioner
gets the unit for its target through core. ``dockyard generate`` and ``dockyard daemon
install`` (dockyard-generate) are the command-line users.

What a backend renders is plain data: :class:`DaemonUnit` (dockyardd's command line, sockets,
PID file, stop timeout) and :class:`ContainerUnit` (the foreground command that runs one
container as a service) in, :class:`UnitFile` (a path below the backend's directory, text,
mode) out. Rules every backend keeps (docs/supervisors.md has the matrix):

* stopping dockyardd never kills containers: the supervisor signals dockyardd alone
  (``KillMode=process``, no process-group kill) and waits ``stop_timeout`` before SIGKILL;
* the daemon's service is restarted by the supervisor when dockyardd dies; its containers keep
  running meanwhile (live-restore), and a restarted dockyardd re-attaches them;
* a container service's restarts belong to its unit only when the container has no restart
  policy of its own (the caller sets ``ContainerUnit.restart`` to ``no`` otherwise).

.. versionadded:: 0.2
"""

from __future__ import annotations

import abc
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from dockyard.specs._base import hookspec

if TYPE_CHECKING:
    from dockyard.kernel import Kernel

#: What a backend's name may be (it is also the ``--supervisor`` value and a distribution name's tail).
BACKEND_NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
#: When a supervisor restarts a service (systemd's ``Restart=`` values that every backend maps).
RESTART_POLICIES = ("no", "on-success", "on-failure", "on-abnormal", "on-abort", "always")
#: Capabilities a backend may declare: ``socket-activation`` (dockyardd gets its sockets from
#: the supervisor), ``notify`` (readiness is dockyardd's ``READY=1``), ``restart`` (it restarts a
#: service that dies), ``pidfile`` (it finds dockyardd by its PID file).
CAPABILITIES = frozenset({"socket-activation", "notify", "restart", "pidfile"})


@dataclass(frozen=True)
class UnitFile:
    """One file a backend writes: ``path`` relative to its directory (``dockyard.service``,
    ``dockyard/run``), the text, the file mode (``0o755`` for a script)."""

    path: str
    text: str
    mode: int = 0o644

    def __post_init__(self) -> None:
        if self.path.startswith("/") or ".." in Path(self.path).parts or not self.path:
            raise ValueError(f"a unit file's path is relative and stays below its directory: {self.path!r}")


@dataclass(frozen=True)
class DaemonUnit:
    """dockyardd as a service.

    ``dockyardd`` is the executable and its flags other than ``-H`` and ``--pidfile``, which
    the backend adds: every ``hosts`` address, or ``-H fd://`` when it passes the sockets itself
    (capability ``socket-activation`` and ``socket_activation`` set; unix and tcp addresses are
    both passed). ``stop_timeout`` is how long the supervisor waits after SIGTERM to dockyardd
    (alone) before SIGKILL. ``log_file`` is where a supervisor without a journal appends
    dockyardd's output (``""``: the backend's default under ``/var/log``).
    """

    name: str = "dockyard"
    dockyardd: tuple[str, ...] = ("/usr/bin/dockyardd",)
    hosts: tuple[str, ...] = ("unix:///run/dockyard/dockyard.sock",)
    pidfile: str = "/run/dockyard/dockyardd.pid"
    environment: tuple[tuple[str, str], ...] = ()
    stop_timeout: int = 20
    socket_activation: bool = True
    log_file: str = ""
    description: str = "dockyard container engine"

    def __post_init__(self) -> None:
        if not self.dockyardd:
            raise ValueError("a DaemonUnit needs dockyardd's command line")
        if not self.hosts:
            raise ValueError("a DaemonUnit needs an address to listen on")
        if any(h.startswith("fd://") for h in self.hosts):
            raise ValueError("hosts are addresses; socket activation is the backend's (socket_activation)")

    def command(self, activated: bool = False) -> list[str]:
        """dockyardd's full command line: ``-H fd://`` when the supervisor passes the sockets."""
        hosts = ["-H", "fd://"] if activated else [a for h in self.hosts for a in ("-H", h)]
        return [*self.dockyardd, *hosts, "--pidfile", self.pidfile]

    def listen_streams(self) -> list[str]:
        """The addresses as a supervisor binds them: a unix socket's path, a TCP ``host:port``."""
        out = []
        for h in self.hosts:
            scheme, _, rest = h.partition("://")
            out.append(rest if scheme == "unix" else rest.rstrip("/"))
        return out


@dataclass(frozen=True)
class ContainerUnit:
    """One container as a service.

    ``command`` runs in the foreground for as long as the container runs and exits with the
    container's status; SIGTERM to it stops the container (within ``stop_timeout``) and it
    exits 0 (dockyard-generate's ``dockyard supervise``). ``new``: the command creates the
    container at start and removes it at stop (podman's ``--new``). ``restart`` is when the
    supervisor starts the command again (one of :data:`RESTART_POLICIES`). ``daemon`` is the
    daemon's service name: the container's service starts after it.
    """

    name: str
    container: str
    command: tuple[str, ...]
    new: bool = False
    restart: str = "on-failure"
    stop_timeout: int = 10
    daemon: str = "dockyard"
    description: str = ""

    def __post_init__(self) -> None:
        if self.restart not in RESTART_POLICIES:
            raise ValueError(f"restart policy {self.restart!r} is not one of {', '.join(RESTART_POLICIES)}")
        if not self.command:
            raise ValueError("a ContainerUnit needs a command")

    @property
    def kill_timeout(self) -> int:
        """How long the supervisor waits for the command after SIGTERM: the container's stop
        timeout, plus time for the daemon to answer."""
        return self.stop_timeout + 15


class Supervisor(abc.ABC):
    """The ABC of a supervisor backend. Stateless: it renders text and reads the host.

    .. versionadded:: 0.2
    """

    #: The backend's name (``systemd``), as in its :class:`SupervisorBackend`.
    name: ClassVar[str]
    #: Where its files go on a host (``/etc/systemd/system``); ``UnitFile.path`` is below it.
    directory: ClassVar[str]
    #: What a service name may be for this supervisor (a name for files, programs, scripts).
    name_pattern: ClassVar[re.Pattern[str]] = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
    #: The :data:`RESTART_POLICIES` it can apply to a container's service.
    restart_policies: ClassVar[tuple[str, ...]] = RESTART_POLICIES

    def check_name(self, name: str) -> None:
        """Raise :class:`~dockyard.errors.InvalidArgument` when ``name`` cannot name one of this
        supervisor's services (before anything is written)."""
        if not self.name_pattern.fullmatch(name):
            from dockyard.errors import InvalidArgument

            raise InvalidArgument(f"{name!r} cannot name a {self.name} service: it must match "
                                  f"{self.name_pattern.pattern}")

    @abc.abstractmethod
    def detect(self, root: Path = Path("/")) -> bool:
        """True when the host whose file system is at ``root`` runs this supervisor now (for
        ``--supervisor auto``). Reads files only; never starts anything."""

    @abc.abstractmethod
    def daemon_files(self, unit: DaemonUnit) -> list[UnitFile]:
        """The files that make dockyardd a service."""

    @abc.abstractmethod
    def container_files(self, unit: ContainerUnit) -> list[UnitFile]:
        """The files that make one container a service."""

    def activate(self, name: str, files: Sequence[UnitFile]) -> list[list[str]]:
        """The commands that enable and start service ``name`` once ``files`` are installed
        (``systemctl daemon-reload``, ``systemctl enable --now dockyard.socket``); ``[]`` when the
        supervisor picks new services up by itself."""
        return []


@dataclass(frozen=True)
class SupervisorBackend:
    """A supervisor backend, described without instantiating it.

    ``factory()`` returns the :class:`Supervisor`. ``detect_order`` ranks backends for
    ``--supervisor auto``: the init system first (systemd 10, upstart 20, runit 30), then a
    supervisor started by it (supervisord 40), sysV scripts last (90).
    """

    name: str
    factory: Callable[[], Supervisor]
    description: str = ""
    capabilities: frozenset[str] = frozenset()
    detect_order: int = 50

    def __post_init__(self) -> None:
        if not BACKEND_NAME.fullmatch(self.name):
            raise ValueError(f"supervisor backend name {self.name!r} must match {BACKEND_NAME.pattern}")
        unknown = set(self.capabilities) - CAPABILITIES
        if unknown:
            raise ValueError(f"{self.name}: unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}")

    def distribution(self) -> str:
        """The conventional distribution of this backend: ``dockyard-supervisor-<name>``."""
        return f"dockyard-supervisor-{self.name}"


@dataclass(frozen=True)
class Supervisors:
    """The installed backends, by name (what :meth:`dockyard.kernel.Kernel.supervisors` returns
    and drivers get with ``context.need(Supervisors)``). ``conflicts``: names two plugins gave,
    usable by neither."""

    backends: Mapping[str, SupervisorBackend] = field(default_factory=dict)
    conflicts: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def names(self) -> list[str]:
        return sorted(self.backends)

    def backend(self, name: str) -> SupervisorBackend:
        """The backend ``name``; an unknown name is an
        :class:`~dockyard.errors.InvalidArgument` listing the installed ones and naming the
        distribution to install, a clash a :class:`~dockyard.errors.PluginConflictError`."""
        from dockyard.errors import InvalidArgument, PluginConflictError

        if name in self.conflicts:
            raise PluginConflictError("supervisor", name, list(self.conflicts[name]))
        found = self.backends.get(name)
        if found is None:
            hint = (f"; a backend is a plugin: pip install dockyard-supervisor-{name}"
                    if BACKEND_NAME.fullmatch(name) else "")
            raise InvalidArgument(f"unknown supervisor {name!r} (installed: {', '.join(self.names()) or 'none'})"
                                  + hint)
        return found

    def get(self, name: str) -> Supervisor:
        """The backend ``name``'s :class:`Supervisor` (see :meth:`backend` for the errors)."""
        return self.backend(name).factory()

    def detect(self, root: Path = Path("/")) -> SupervisorBackend:
        """The first backend (``detect_order``, then name) whose supervisor the host runs;
        :class:`~dockyard.errors.Unavailable` naming the installed ones when none does."""
        for b in sorted(self.backends.values(), key=lambda b: (b.detect_order, b.name)):
            if b.factory().detect(root):
                return b
        from dockyard.errors import Unavailable

        raise Unavailable(f"none of the installed supervisor backends ({', '.join(self.names()) or 'none'}) "
                          f"finds its supervisor running on this host; name one with --supervisor")


class SupervisorSpecs:
    """Hook specifications of the ``supervisor`` area."""

    @hookspec
    def dockyard_supervisors(self, kernel: Kernel) -> Iterable[SupervisorBackend]:
        """Supervisor backends this plugin offers.

        Called once per kernel (:meth:`dockyard.kernel.Kernel.supervisors`), every result
        kept. Return descriptors only: import the backend's module in ``factory``. Two plugins
        giving one name are a recorded :class:`~dockyard.errors.PluginConflictError` naming
        both, and neither is used.

        Example::

            @hookimpl
            def dockyard_supervisors(kernel):
                return [SupervisorBackend("s6", factory=lambda: S6(), description="s6-svscan",
                                          capabilities=frozenset({"restart"}), detect_order=30)]

        .. versionadded:: 0.2
        """
