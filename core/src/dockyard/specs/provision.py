"""Area ``provision``: machines that run the engine (Docker Machine's role).

Provision drivers register under ``dockyard.drivers.provision`` and are chosen per host:
``netns`` (a local test host in a network namespace running its own dockyardd), ``ssh`` (a
generic host reached over SSH). The host service stores :class:`dockyard.model.Host` objects;
drivers only act and report.

Creating a host takes two calls, because the engine's server certificate names the addresses
the host is reached by, and only the driver knows them::

    host = await driver.prepare(request)            # name and addresses reserved, nothing runs
    flags = [*request.engine_options, *provisioning.engine_flags(kernel, host)]
    tls = EngineTLS(ca, cert_for(host.addresses), key)   # the caller's certificate library
    host = await driver.create(host, tls, flags)     # the engine listens with mutual TLS

:func:`dockyard.provisioning.provision` runs exactly that, and removes the prepared host when a
later step fails. Every engine a driver starts off loopback serves mutual TLS
(``--tlsverify``): plain TCP is only for 127.0.0.1.

Capabilities: ``engine`` -- the driver's hosts run a real engine this machine reaches at
``engine_url`` (the conformance kit then checks it over mutual TLS); a test double without one
does not declare it. ``tls-rotation`` -- :meth:`Provisioner.update_tls` replaces a created
host's server certificate (``dockyard machine regenerate-certs``).

.. versionadded:: 0.1
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.specs._base import Driver, hookspec

if TYPE_CHECKING:
    from dockyard.kernel import Kernel
    from dockyard.model import Host

#: The states :meth:`Provisioner.state` reports (Docker Machine's, minus the transient ones).
HOST_STATES = ("running", "stopped", "error", "none")

#: A PEM part of :class:`EngineTLS`: the PEM bytes themselves, or the path of a PEM file.
PemSource = bytes | str | os.PathLike[str]


@dataclass
class HostRequest:
    """What the caller asks :meth:`Provisioner.prepare` for.

    ``options`` are the driver's own flags (an address, an SSH user...); ``engine_options``
    extra ``dockyardd`` flags, which the caller passes on to :meth:`Provisioner.create`;
    ``engine_env`` variables added to the engine's environment (Docker Machine's
    ``--engine-env``): the driver records them at :meth:`Provisioner.prepare` and sets them
    at every start of the engine.
    """

    name: str
    options: dict[str, str] = field(default_factory=dict)
    engine_options: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    engine_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EngineTLS:
    """The TLS material a host's engine serves with (Docker Machine's ``ca.pem``,
    ``server.pem``, ``server-key.pem``): the CA its clients' certificates must be signed by, and
    its own certificate (whose subject alternative names are the host's ``addresses``) and key.

    Each part is PEM bytes, or the path (``str`` or path-like) of a PEM file. The caller makes
    them with its certificate library; a driver copies them onto the host and never makes or
    checks certificates itself.
    """

    ca_cert: PemSource
    cert: PemSource
    key: PemSource

    def pem(self, part: str) -> bytes:
        """The PEM bytes of ``part`` (``ca_cert``, ``cert`` or ``key``), read from its file if
        it was given as a path."""
        if part not in ("ca_cert", "cert", "key"):
            raise ValueError(f"no TLS part {part!r}: one of ca_cert, cert, key")
        value = getattr(self, part)
        return value if isinstance(value, bytes) else Path(value).read_bytes()


@dataclass(frozen=True)
class HostState:
    """What :meth:`Provisioner.state` reports: one of :data:`HOST_STATES`, and for ``error``
    (and a ``stopped`` the driver did not ask for) why, e.g. the engine's exit status and the
    tail of its log."""

    state: str
    reason: str = ""

    def __post_init__(self) -> None:
        if self.state not in HOST_STATES:
            raise ValueError(f"host state {self.state!r} is not one of {', '.join(HOST_STATES)}")


class Provisioner(Driver):
    """The ABC of a provision driver (Docker Machine's driver interface, split where a TLS
    engine needs it: :meth:`prepare` reports the addresses before :meth:`create` gets the server
    certificate made for them).

    Every method is safe to call concurrently for different hosts (a test creates five hosts
    at once). A host is identified by the :class:`~dockyard.model.Host` that :meth:`prepare`
    returned (its ``id``); its ``extra`` holds the driver's record of what it made.

    .. versionadded:: 0.1
    """

    @abc.abstractmethod
    async def prepare(self, request: HostRequest) -> Host:
        """Reserve a host: check the request, reserve its name and addresses, start nothing.

        Called first, before the caller makes the server certificate. Result: a
        :class:`~dockyard.model.Host` with a fresh ``id``, ``name`` and ``labels`` as asked,
        ``driver`` set to this driver's name, ``addresses`` (what the engine will be reached
        by: the certificate's subject alternative names), ``engine_url`` (e.g.
        ``tcp://ADDR:2376``) and state ``none``. A name already in use is a
        :class:`~dockyard.errors.Conflict`, bad options an
        :class:`~dockyard.errors.InvalidArgument`. :meth:`remove` releases a prepared host.

        .. versionadded:: 0.1
        """

    @abc.abstractmethod
    async def create(self, host: Host, tls: EngineTLS, engine_flags: Sequence[str]) -> Host:
        """Make the prepared ``host``, install and start its engine, and wait until it answers.

        ``tls`` is the engine's server material: it listens on ``host.engine_url`` with
        mutual TLS (``--tlsverify``: only clients with a certificate signed by ``tls.ca_cert``).
        ``engine_flags`` are extra ``dockyardd`` flags: the request's ``engine_options`` followed
        by the ``dockyard_engine_flags`` hook's results, put together by the caller. Returns
        the host in state ``running``, its ``extra`` recording what was made. On failure the
        exception says why (the engine's log tail if it did not come up) and whatever was made
        stays for :meth:`remove` to clean.

        .. versionadded:: 0.1
        """

    @abc.abstractmethod
    async def start(self, host: Host) -> None:
        """Start a stopped (or failed) host's engine and wait until it answers. A running host
        is left as it is.

        .. versionadded:: 0.1
        """

    @abc.abstractmethod
    async def stop(self, host: Host) -> None:
        """Stop the host's engine (and the host, where that means something) and wait until it
        has stopped. A stopped host is left as it is; its data stays for :meth:`start`.

        .. versionadded:: 0.1
        """

    @abc.abstractmethod
    async def remove(self, host: Host) -> None:
        """Destroy the host and everything made for it, whatever state it is in: prepared,
        half-created, running, stopped or broken. Removing a host that no longer exists does
        nothing. Afterwards :meth:`state` is ``none``.

        .. versionadded:: 0.1
        """

    @abc.abstractmethod
    async def state(self, host: Host) -> HostState:
        """The host's state as it is now (checked, not remembered): ``running`` (the engine
        answers), ``stopped``, ``error`` (with the reason: e.g. the engine died, with its exit
        status and log tail) or ``none`` (never created, only prepared, or removed).

        .. versionadded:: 0.1
        """

    @abc.abstractmethod
    async def engine_url(self, host: Host) -> str:
        """The engine's API address (``tcp://ip:2376``).

        .. versionadded:: 0.1
        """

    async def upgrade(self, host: Host, tls: EngineTLS, engine_flags: Sequence[str]) -> None:
        """Bring ``host``'s engine to the dockyard installed on this machine and leave it
        running (``dockyard machine upgrade``); its containers keep running (live-restore).
        ``tls`` and ``engine_flags`` are the host's current ones, as at :meth:`create`.

        The default stops and starts the host: right for a driver whose engine runs this
        machine's installed code (netns). A driver that installs the engine elsewhere (ssh,
        qemu) installs it again.

        .. versionadded:: 0.2
        """
        await self.stop(host)
        await self.start(host)

    async def ssh_target(self, host: Host) -> SshTarget | None:
        """How a user logs into ``host`` over SSH (``dockyard machine ssh``/``scp``), or ``None``
        for a driver whose hosts have no SSH (a netns host is entered with ``nsenter``). The
        key and known_hosts paths are on the machine that runs the driver.

        .. versionadded:: 0.2
        """
        return None

    async def update_tls(self, host: Host, tls: EngineTLS) -> None:
        """Replace the server TLS material of a created ``host``'s engine (a rotated
        certificate: ``dockyard machine regenerate-certs``). The engine presents it from its
        next start; the caller restarts it (:meth:`stop`, then :meth:`start`) when it runs.

        Drivers declaring the capability ``tls-rotation`` implement it; this default raises
        :class:`~dockyard.errors.Unavailable`. A host that was never created is a
        :class:`~dockyard.errors.NotFound`.

        .. versionadded:: 0.2
        """
        from dockyard.errors import Unavailable

        raise Unavailable(f"the {self.info.name} provision driver cannot replace the certificate of a "
                          f"host's engine (it does not declare the capability 'tls-rotation')")


@dataclass(frozen=True)
class SshTarget:
    """A machine reached over SSH, where an engine is installed.

    ``known_hosts`` pins the machine's host key (a file in OpenSSH's format); an installer
    never accepts an unknown key silently. ``key_path`` is the private key to log in with.
    ``install_root`` is the directory on the machine an installer puts each engine under
    (``<install_root>/<name>``: code, configuration, data).
    """

    address: str
    port: int = 22
    user: str = "root"
    key_path: str = ""
    known_hosts: str = ""
    install_root: str = "/opt/dockyard"


@dataclass(frozen=True)
class EngineInstall:
    """What an installer is asked to set up on a target.

    ``listen`` are the engine's ``-H`` addresses on the target (``tcp://0.0.0.0:2376``...);
    ``engine_url`` is where *this* machine reaches that engine (through a port forward it may
    differ), checked with ``/_ping`` over mutual TLS before :meth:`EngineInstaller.install`
    returns.
    """

    name: str
    listen: tuple[str, ...]
    engine_url: str
    tls: EngineTLS
    engine_flags: tuple[str, ...] = ()
    engine_env: tuple[tuple[str, str], ...] = ()


class EngineInstaller(abc.ABC):
    """Installs and runs ``dockyardd`` on a machine reached over SSH (Docker Machine's
    provisioning step): the code (without network access on the target), the Debian packages
    the engine needs, a supervisor unit, the TLS material, then a verified start.

    A cross-area need (:mod:`dockyard.specs.provides`): the ``ssh`` provision driver's
    distribution implements it and provides it with ``dockyard_provides``; a driver that
    boots a machine and then reaches it over SSH (``qemu``) uses the same one through
    ``self.context.need(EngineInstaller)``: one install path, not a copy.

    .. versionadded:: 0.2
    """

    @abc.abstractmethod
    async def install(self, target: SshTarget, spec: EngineInstall,
                      progress: Callable[[str], None] | None = None) -> None:
        """Install the engine on ``target`` and start it; return once ``spec.engine_url``
        answers ``/_ping`` over mutual TLS. Idempotent: a second call brings the installation
        to ``spec`` (new flags, new certificates). ``progress`` receives one line per step.
        Raises :class:`~dockyard.errors.Unavailable` naming what is missing on the target
        (e.g. Debian packages it cannot install without a mirror)."""

    @abc.abstractmethod
    async def start_engine(self, target: SshTarget, name: str) -> None:
        """Start the installed engine ``name`` (its supervisor unit)."""

    @abc.abstractmethod
    async def stop_engine(self, target: SshTarget, name: str) -> None:
        """Stop the engine ``name``; its containers keep running (live-restore)."""

    @abc.abstractmethod
    async def engine_state(self, target: SshTarget, name: str) -> HostState:
        """``running``, ``stopped`` or ``error`` (with the reason) of the engine ``name``."""

    @abc.abstractmethod
    async def uninstall(self, target: SshTarget, name: str) -> None:
        """Stop the engine ``name`` and remove what :meth:`install` put on the target."""


class ProvisionSpecs:
    """Hook specifications of the ``provision`` area."""

    @hookspec
    def dockyard_engine_flags(self, kernel: Kernel, host: Host) -> list[str] | None:
        """Extra ``dockyardd`` flags for the engine of a host being provisioned.

        Called between :meth:`Provisioner.prepare` and :meth:`Provisioner.create`: ``host`` is
        the prepared host (name, labels, ``addresses``, ``engine_url`` known; nothing runs yet),
        so a plugin can, e.g., label the engine with the host's name or point it at a cluster
        store. All results are concatenated in call order. Return ``None`` for none.

        .. versionadded:: 0.1
        """
