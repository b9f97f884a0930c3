"""Hook specifications and driver ABCs, one module per area.

Areas (``dockyard.drivers.<kind>`` entry points, see :data:`NAMESPACES`): ``arch``,
``storage`` (+ ``volume``), ``network`` (+ ``ipam``), ``cluster``, ``provision``. Feature
hooks: ``api``, ``events``, ``config``, ``provides``, ``supervisor``; CLI groups come from the ``dockyard.cli`` group.

Names are loaded lazily (PEP 562): importing one spec module, as the registry does when the
CLI resolves a command, does not import every area's module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from dockyard.specs._base import (
    AREAS,
    DRIVER_API_VERSION,
    NAMESPACES,
    PROVIDER_GROUP,
    Driver,
    DriverContext,
    DriverInfo,
    DriverProvider,
    conventional_distribution,
    entry_point_group,
    hookimpl,
    hookspec,
)

if TYPE_CHECKING:
    from dockyard.specs.api import ApiFront, ApiMiddleware, ApiRoute, ApiSpecs
    from dockyard.specs.arch import ArchSpecs, CheckpointDriver, RuntimeDriver
    from dockyard.specs.cluster import ClusterSpecs, ClusterStore
    from dockyard.specs.config import ConfigOption, ConfigSpecs
    from dockyard.specs.events import BackgroundService, EventJournal, EventSpecs
    from dockyard.specs.network import (
        EmbeddedDnsDriver,
        GlobalScopeDriver,
        IpamDriver,
        NetworkDriver,
        NetworkSpecs,
    )
    from dockyard.specs.provision import Provisioner, ProvisionSpecs
    from dockyard.specs.storage import ImagePuller, LayerDriver, StorageSpecs, VolumeDriver
    from dockyard.specs.supervisor import Supervisor, SupervisorBackend, Supervisors, SupervisorSpecs

#: Public name -> the spec module that defines it.
_LAZY: dict[str, str] = {
    "ApiFront": "api", "ApiMiddleware": "api", "ApiRoute": "api", "ApiSpecs": "api",
    "ArchSpecs": "arch", "CheckpointDriver": "arch", "RuntimeDriver": "arch",
    "ClusterSpecs": "cluster", "ClusterStore": "cluster",
    "ConfigOption": "config", "ConfigSpecs": "config",
    "BackgroundService": "events", "EventJournal": "events", "EventSpecs": "events",
    "EmbeddedDnsDriver": "network", "GlobalScopeDriver": "network", "IpamDriver": "network",
    "NetworkDriver": "network",
    "NetworkSpecs": "network",
    "Provisioner": "provision", "ProvisionSpecs": "provision",
    "Provided": "provides", "ProvidesSpecs": "provides",
    "ImagePuller": "storage", "LayerDriver": "storage", "StorageSpecs": "storage", "VolumeDriver": "storage",
    "Supervisor": "supervisor", "SupervisorBackend": "supervisor", "Supervisors": "supervisor",
    "SupervisorSpecs": "supervisor",
}

#: Every hookspec class (registered on each kernel's plugin manager), by defining module.
_SPEC_CLASSES = (("arch", "ArchSpecs"), ("storage", "StorageSpecs"), ("network", "NetworkSpecs"),
                 ("cluster", "ClusterSpecs"), ("provision", "ProvisionSpecs"), ("api", "ApiSpecs"),
                 ("events", "EventSpecs"), ("config", "ConfigSpecs"), ("provides", "ProvidesSpecs"),
                 ("supervisor", "SupervisorSpecs"))

#: The ABC each driver kind must subclass.
_DRIVER_BASES = {"arch": "RuntimeDriver", "storage": "LayerDriver", "volume": "VolumeDriver",
                 "network": "NetworkDriver", "ipam": "IpamDriver", "cluster": "ClusterStore",
                 "provision": "Provisioner"}

#: (kind, capability) -> the ABC whose methods are that capability's protocol. A driver of
#: ``kind`` declaring the capability must subclass it, and a subclass must declare it.
_CAPABILITY_BASES = {("arch", "checkpoint"): "CheckpointDriver",
                     ("network", "embedded-dns"): "EmbeddedDnsDriver",
                     ("network", "global-scope"): "GlobalScopeDriver"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"dockyard.specs.{_LAZY[name]}"), name)
    elif name == "SPEC_CLASSES":
        value = tuple(getattr(importlib.import_module(f"dockyard.specs.{m}"), c) for m, c in _SPEC_CLASSES)
    elif name == "DRIVER_BASES":
        value = {kind: __getattr__(cls) for kind, cls in _DRIVER_BASES.items()}
    elif name == "CAPABILITY_BASES":
        value = {key: __getattr__(cls) for key, cls in _CAPABILITY_BASES.items()}
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value  # computed once
    return value


__all__ = [
    "AREAS", "CAPABILITY_BASES", "DRIVER_API_VERSION", "DRIVER_BASES", "NAMESPACES", "PROVIDER_GROUP",
    "SPEC_CLASSES",
    "ApiFront", "ApiMiddleware", "ApiRoute", "ImagePuller", "BackgroundService", "CheckpointDriver", "ConfigOption", "Driver", "EventJournal",
    "DriverContext", "DriverInfo", "DriverProvider", "EmbeddedDnsDriver", "GlobalScopeDriver", "IpamDriver",
    "LayerDriver", "NetworkDriver", "ClusterStore",
    "Provisioner", "RuntimeDriver", "VolumeDriver", "entry_point_group", "hookimpl",
    "hookspec", "conventional_distribution",
    "ApiSpecs", "ArchSpecs", "ClusterSpecs", "ConfigSpecs", "EventSpecs", "NetworkSpecs", "ProvisionSpecs",
    "StorageSpecs", "Supervisor", "SupervisorBackend", "SupervisorSpecs", "Supervisors",
]
