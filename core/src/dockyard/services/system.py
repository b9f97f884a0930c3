"""The ``system`` service: what ``/info`` and ``/system/df`` report about the objects a daemon
holds. A local engine counts its own store and drivers; a cluster manager aggregates its nodes.
The API front adds the daemon's own facts (version, plugins, configuration) and the dialect.

.. versionadded:: 0.2
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from dockyard.model import Container, Image, Volume


@dataclass(frozen=True)
class EngineInfo:
    """Counts and drivers of the objects behind the API (Docker's ``/info`` fields)."""

    containers_running: int = 0  # running or restarting
    containers_paused: int = 0
    containers_stopped: int = 0  # created, exited, dead, removing
    images: int = 0
    storage_driver: str = ""
    driver_status: list[tuple[str, str]] = field(default_factory=list)
    volume_drivers: list[str] = field(default_factory=list)
    network_drivers: list[str] = field(default_factory=list)
    runtimes: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_runtime: str = ""
    security_options: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: what a service adds to ``/info`` beyond the counts (a cluster manager's facts): Docker's
    #: ``SystemStatus`` pairs (Swarm classic's Role, Strategy, Filters, Nodes and one block per
    #: node, printed by ``docker info`` as they come), and totals standing in for this host's
    #: (0 or "": the front reports this host's CPUs, memory, version and OS)
    system_status: list[tuple[str, str]] = field(default_factory=list)
    ncpu: int = 0
    mem_total: int = 0
    server_version: str = ""
    operating_system: str = ""
    #: whether containers can be checkpointed here, and for which OCI runtimes, or why not
    #: (the runtime driver's ``checkpoint_support``; versionadded 0.3); "" = not asked
    checkpoint: str = ""
    #: what the runtime driver runs here, native first (``("linux/amd64", False)``,
    #: ``("linux/arm64", True)``: emulated), and the OS of its native platform (Docker's
    #: ``OSType``; "" = the front's host facts) (versionadded 0.3)
    platforms: list[tuple[str, bool]] = field(default_factory=list)
    os_type: str = ""

    @property
    def containers(self) -> int:
        return self.containers_running + self.containers_paused + self.containers_stopped


@dataclass(frozen=True)
class ImageUsage:
    image: Image
    containers: int  # containers created from it
    shared_size: int  # bytes of its layers that other images use too


@dataclass(frozen=True)
class ContainerUsage:
    container: Container
    size_rw: int  # bytes of its writable layer
    size_root_fs: int  # writable layer plus its image


@dataclass(frozen=True)
class VolumeUsage:
    volume: Volume
    ref_count: int  # containers that reference it
    size: int  # bytes, -1 when its driver cannot tell


@dataclass(frozen=True)
class DiskUsage:
    """``docker system df``: what the images, containers and volumes hold."""

    layers_size: int = 0
    images: list[ImageUsage] = field(default_factory=list)
    containers: list[ContainerUsage] = field(default_factory=list)
    volumes: list[VolumeUsage] = field(default_factory=list)


class System(Protocol):
    async def info(self) -> EngineInfo: ...
    async def df(self) -> DiskUsage: ...


__all__ = ["ContainerUsage", "DiskUsage", "EngineInfo", "ImageUsage", "System", "VolumeUsage"]
