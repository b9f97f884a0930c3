"""What every spec module shares: the pluggy markers, descriptors and the driver base class."""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import pluggy

if TYPE_CHECKING:
    from dockyard.specs.config import ConfigOption

PROJECT = "dockyard"

#: Marks a hook specification (used only by ``dockyard.specs.*``).
hookspec = pluggy.HookspecMarker(PROJECT)
#: Marks a hook implementation in a plugin module or object.
hookimpl = pluggy.HookimplMarker(PROJECT)

#: The driver ABI version this core implements. A driver declaring another major is refused.
DRIVER_API_VERSION = 1

#: The five areas of the design card, and the entry-point namespaces that belong to each.
#: ``single`` namespaces select exactly one driver from config; the others hold many drivers
#: chosen per object (per network, per volume, per platform, per host).
AREAS: dict[str, tuple[str, ...]] = {
    "arch": ("arch",),
    "storage": ("storage", "volume"),
    "network": ("network", "ipam"),
    "cluster": ("cluster",),
    "provision": ("provision",),
}

#: namespace kind -> (area, config key selecting the driver, or None when chosen per object,
#: the default driver name)
NAMESPACES: dict[str, tuple[str, str | None, str]] = {
    "arch": ("arch", None, "linux"),
    "storage": ("storage", "storage-driver", "overlay"),
    "volume": ("storage", None, "local"),
    "network": ("network", None, "bridge"),
    "ipam": ("network", None, "default"),
    "cluster": ("cluster", "cluster-store", ""),
    "provision": ("provision", None, "netns"),
}

#: When a single-driver kind is not configured, the first of these that is installed and
#: sets up wins (then any other installed one, by name), as dockerd picks a graph driver: a
#: kernel without overlayfs, or a host where overlay is uninstalled, gets vfs. A configured
#: driver is never replaced: its failure is the daemon's failure.
AUTO_PRIORITY: dict[str, tuple[str, ...]] = {"storage": ("overlay", "vfs")}

#: Distributions whose name does not follow ``dockyard-<area>-<name>``.
PROVIDER_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("ipam", "default"): "dockyard-network-ipam",
    ("network", "host"): "dockyard-network-bridge",
    ("network", "null"): "dockyard-network-bridge",
    ("volume", "local"): "dockyard-storage-local",
}


def entry_point_group(kind: str) -> str:
    """The entry-point group of a driver kind: ``dockyard.drivers.<kind>``."""
    return f"dockyard.drivers.{kind}"


def provider_distribution(kind: str, name: str) -> str:
    """The distribution that conventionally provides driver ``name`` of ``kind``."""
    area = NAMESPACES[kind][0]
    return PROVIDER_EXCEPTIONS.get((kind, name), f"dockyard-{area}-{name}")


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
