"""What every spec module shares: the pluggy markers, descriptors and the driver base class."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import pluggy

if TYPE_CHECKING:
    from dockyard.specs.config import ConfigOption

PROJECT = "dockyard"

T = TypeVar("T")

#: Marks a hook specification (used only by ``dockyard.specs.*``).
hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a hook implementation in a plugin module or object.
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The driver ABI version this core implements. A driver declaring another major is refused.
DRIVER_API_VERSION = 1

#: driver kind -> (area, config key selecting the driver, or None when chosen per object,
#: the default driver name). Each kind has one entry-point group, ``dockyard.drivers.<kind>``.
#: Its area is the spec module that defines its ABC (``dockyard.specs.<area>``): a kind
#: belongs to exactly one area, and an area holds one kind or more (``storage``: layer and
#: volume drivers; ``network``: network and IPAM drivers). Keyed drivers are chosen from
#: config (exactly one); the others per object (per network, per volume, per platform, per host).
NAMESPACES: dict[str, tuple[str, str | None, str]] = {
    "arch": ("arch", None, "linux"),
    "storage": ("storage", "storage-driver", "overlay"),
    "volume": ("storage", None, "local"),
    "network": ("network", None, "bridge"),
    "ipam": ("network", None, "default"),
    "cluster": ("cluster", "cluster-store", ""),
    "provision": ("provision", None, "netns"),
}

#: area -> its driver kinds, derived from :data:`NAMESPACES` (the five areas of the design card).
AREAS: dict[str, tuple[str, ...]] = {
    area: tuple(kind for kind, (of, _key, _default) in NAMESPACES.items() if of == area)
    for area, _key, _default in NAMESPACES.values()
}

#: When a single-driver kind is not configured, the first of these that is installed and
#: sets up wins (then any other installed one, by name), as dockerd picks a graph driver: a
#: kernel without overlayfs, or a host where overlay is uninstalled, gets vfs. A configured
#: driver is never replaced: its failure is the daemon's failure.
AUTO_PRIORITY: dict[str, tuple[str, ...]] = {"storage": ("overlay", "vfs")}

#: The entry-point group where installed distributions declare which distribution provides a
#: driver that may not be installed (each entry point: an iterable of :class:`DriverProvider`).
PROVIDER_GROUP = "dockyard.providers"


def entry_point_group(kind: str) -> str:
    """The entry-point group of a driver kind: ``dockyard.drivers.<kind>``."""
    return f"dockyard.drivers.{kind}"


def conventional_distribution(kind: str, name: str) -> str:
    """The distribution that provides driver ``name`` of ``kind`` by the naming convention,
    ``dockyard-<area>-<name>``: what ``dockyard plugin new`` generates. A driver that is not
    installed and whose distribution is named otherwise is found through :data:`PROVIDER_GROUP`
    (:meth:`dockyard.registry.Registry.provider_of`)."""
    area = NAMESPACES[kind][0]
    return f"dockyard-{area}-{name}"


@dataclass(frozen=True)
class DriverProvider:
    """Declares that ``distribution`` provides driver ``name`` of ``kind``: the hint a
    :class:`~dockyard.errors.DriverNotInstalled` gives when that driver is not installed.

    An installed distribution lists these under :data:`PROVIDER_GROUP` for drivers it uses
    but does not ship, whose distribution is not named ``dockyard-<area>-<name>`` (the engine:
    its built-in ``host`` and ``none`` networks come from ``dockyard-network-bridge``)::

        [project.entry-points."dockyard.providers"]
        engine = "dockyard_engine.default_drivers:PROVIDERS"

    An installed driver needs none: its own entry point names its distribution.
    """

    kind: str
    name: str
    distribution: str

    def __post_init__(self) -> None:
        if self.kind not in NAMESPACES:
            raise ValueError(f"unknown driver kind {self.kind!r}; one of {sorted(NAMESPACES)}")
        if not self.name or not self.distribution:
            raise ValueError("a DriverProvider needs a driver name and a distribution")


@dataclass(frozen=True)
class DriverInfo:
    """Describes a driver without instantiating it (listing, validation, /info).

    ``capabilities`` are strings the conformance kits use to skip cases a driver does not
    claim; each area's spec module lists the names its kit knows (storage: ``xattrs``,
    ``opaque-dirs``, ``tmpfs``, ``bind``; network: ``connectivity``, ``isolation``,
    ``port-publishing``, ``internal``, ``ipv6``, ``global-scope``; arch: ``pause``, ``exec``).
    """

    name: str
    kind: str
    description: str = ""
    capabilities: frozenset[str] = frozenset()
    api_version: int = DRIVER_API_VERSION

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", self.name.strip().lower())
        if not self.name:
            raise ValueError("a driver needs a name")
        if self.kind not in NAMESPACES:
            raise ValueError(f"unknown driver kind {self.kind!r}; one of {sorted(NAMESPACES)}")


@dataclass(frozen=True)
class DriverContext:
    """What the kernel hands a driver at construction: its own directories and options.

    Drivers get no kernel, no store and no other driver: services compose drivers.
    ``owner`` is a short token derived from the daemon's data root; every kernel object a
    driver creates (bridge, veth, cgroup, nft table, mount) carries it in its name so that
    reconciliation finds them and two daemons never touch each other's objects.
    """

    data_dir: Path  # <data-root>/<kind>/<name>, created by the kernel
    run_dir: Path  # <exec-root>/<kind>/<name>, created by the kernel
    owner: str
    options: Mapping[str, str] = field(default_factory=dict)  # ``<kind>-opts`` key=value settings
    daemon_config: Mapping[str, Any] = field(default_factory=dict)
    #: Implementations of cross-area interfaces other plugins provide (``dockyard_provides``),
    #: by interface: see :mod:`dockyard.specs.provides`.
    provided: Mapping[type, Any] = field(default_factory=dict)

    def need(self, interface: type[T], why: str = "") -> T:
        """The implementation of ``interface`` an installed plugin provides.

        Raises :class:`~dockyard.errors.Unavailable` naming the interface (and ``why`` the
        driver needs it, e.g. which distribution to install) when none does.
        """
        impl = self.provided.get(interface)
        if impl is None:
            from dockyard.errors import Unavailable

            raise Unavailable(f"no installed plugin provides {interface.__module__}.{interface.__qualname__}"
                              + (f": {why}" if why else ""))
        return impl


class Driver(abc.ABC):
    """Base of every driver. Subclasses set ``info`` and implement their area's ABC.

    Life cycle: constructed with a :class:`DriverContext`, ``await setup()`` once before use
    (reconcile leftovers here), ``await close()`` at daemon shutdown. Methods are ``async``;
    blocking work goes to a thread (``asyncio.to_thread``) or a child process with a timeout.
    """

    info: ClassVar[DriverInfo]
    #: ``daemon.json`` keys this driver reads from ``context.daemon_config`` (dockerd's own
    #: keys such as ``mtu`` included), so the daemon accepts and type-checks them.
    config_options: ClassVar[tuple[ConfigOption, ...]] = ()

    def __init__(self, context: DriverContext) -> None:
        self.context = context

    async def setup(self) -> None:
        """Prepare the driver for use (create directories, reconcile kernel objects)."""

    async def close(self) -> None:
        """Release resources at daemon shutdown. Must not stop running containers."""

    def status(self) -> list[tuple[str, str]]:
        """Key/value pairs shown in ``/info`` (Docker's ``DriverStatus``)."""
        return []
