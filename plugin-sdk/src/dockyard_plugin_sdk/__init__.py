"""What a third-party dockyard driver or plugin author imports.

Base classes and markers are re-exported from ``dockyard.specs`` so that an author depends on
one stable import path; conformance kits live in ``dockyard_plugin_sdk.conformance.<area>``.
"""

from dockyard.specs import (
    ApiMiddleware,
    ApiRoute,
    BackgroundService,
    ClusterStore,
    ConfigOption,
    Driver,
    DriverContext,
    DriverInfo,
    EmbeddedDnsDriver,
    IpamDriver,
    LayerDriver,
    NetworkDriver,
    Provisioner,
    RuntimeDriver,
    VolumeDriver,
    hookimpl,
)

__version__ = "0.1.0"

__all__ = [
    "ApiMiddleware", "ApiRoute", "BackgroundService", "ClusterStore", "ConfigOption", "Driver", "DriverContext",
    "DriverInfo", "EmbeddedDnsDriver", "IpamDriver", "LayerDriver", "NetworkDriver", "Provisioner",
    "RuntimeDriver", "VolumeDriver", "hookimpl",
]
