"""The local engine's services, as the kernel finds them (entry point ``dockyard.services:
engine``). Each factory imports its module only when the kernel builds the service, so listing
providers (``dockyard plugins list``) stays cheap.

Start order: volumes and images before containers (a container's mounts and rootfs), networks
before containers (endpoints are restored before containers are re-attached). Stop runs in
reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dockyard.services import Service, ServiceInfo

if TYPE_CHECKING:
    from dockyard.kernel import Kernel


def _volumes(kernel: Kernel) -> Service:
    from dockyard_engine.volumes import VolumeService

    return VolumeService(kernel)


def _images(kernel: Kernel) -> Service:
    from dockyard_engine.images import ImageService

    return ImageService(kernel)


def _networks(kernel: Kernel) -> Service:
    from dockyard_engine.networks import NetworkService

    return NetworkService(kernel)


def _containers(kernel: Kernel) -> Service:
    from dockyard_engine.containers import ContainerService

    return ContainerService(kernel)


def _system(kernel: Kernel) -> Service:
    from dockyard_engine.system import SystemService

    return SystemService(kernel)


SERVICES: tuple[ServiceInfo, ...] = (
    ServiceInfo("volumes", _volumes, description="named and anonymous volumes over volume drivers"),
    ServiceInfo("images", _images, after=("volumes",),
                description="image store: content, layers, load/save/import/commit"),
    ServiceInfo("networks", _networks, after=("images",),
                description="networks, IPAM, endpoints, embedded DNS"),
    ServiceInfo("containers", _containers, after=("volumes", "images", "networks"),
                description="container life cycle, exec, logs, attach, health, restart policies"),
    ServiceInfo("system", _system, after=("containers",), description="/info counts and /system/df sizes"),
)
