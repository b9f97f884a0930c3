"""The local volume driver against the plugin-sdk volume conformance kit."""

from dockyard_plugin_sdk.conformance.volume import VolumeContract
from dockyard_storage_local.driver import LocalVolumeDriver


class TestLocalConformance(VolumeContract):
    driver_class = LocalVolumeDriver
