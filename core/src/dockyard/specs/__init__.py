"""Hook specifications and driver ABCs, one module per area.

Areas (``dockyard.drivers.<kind>`` entry points, see :data:`NAMESPACES`): ``arch``,
``storage`` (+ ``volume``), ``network`` (+ ``ipam``), ``cluster``, ``provision``. Feature
hooks: ``api``, ``events``, ``config``; CLI groups come from the ``dockyard.cli`` group.
"""

from dockyard.specs._base import (
    AREAS,
    DRIVER_API_VERSION,
    NAMESPACES,
    Driver,
    DriverContext,
    DriverInfo,
    entry_point_group,
    hookimpl,
    hookspec,
    provider_distribution,
)
from dockyard.specs.api import ApiFront, ApiMiddleware, ApiRoute, ApiSpecs
from dockyard.specs.arch import ArchSpecs, RuntimeDriver
from dockyard.specs.cluster import ClusterSpecs, NodeStore
from dockyard.specs.config import ConfigOption, ConfigSpecs
from dockyard.specs.events import BackgroundService, EventSpecs
from dockyard.specs.network import IpamDriver, NetworkDriver, NetworkSpecs
from dockyard.specs.provision import Provisioner, ProvisionSpecs
from dockyard.specs.storage import ImagePuller, LayerDriver, StorageSpecs, VolumeDriver

#: Every hookspec class, registered on each kernel's plugin manager.
SPEC_CLASSES = (ArchSpecs, StorageSpecs, NetworkSpecs, ClusterSpecs, ProvisionSpecs,
                ApiSpecs, EventSpecs, ConfigSpecs)

#: The ABC each driver kind must subclass.
DRIVER_BASES: dict[str, type[Driver]] = {
    "arch": RuntimeDriver,
    "storage": LayerDriver,
    "volume": VolumeDriver,
    "network": NetworkDriver,
    "ipam": IpamDriver,
    "cluster": NodeStore,
    "provision": Provisioner,
}

__all__ = [
    "AREAS", "DRIVER_API_VERSION", "DRIVER_BASES", "NAMESPACES", "SPEC_CLASSES",
    "ApiFront", "ApiMiddleware", "ApiRoute", "ImagePuller", "BackgroundService", "ConfigOption", "Driver",
    "DriverContext", "DriverInfo", "IpamDriver", "LayerDriver", "NetworkDriver", "NodeStore",
    "Provisioner", "RuntimeDriver", "VolumeDriver", "entry_point_group", "hookimpl",
    "hookspec", "provider_distribution",
]
