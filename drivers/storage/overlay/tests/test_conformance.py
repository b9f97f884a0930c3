"""The overlay driver against the plugin-sdk storage conformance kit."""

from dockyard_plugin_sdk.conformance.storage import StorageContract
from dockyard_storage_overlay.driver import OverlayDriver


class TestOverlayConformance(StorageContract):
    driver_class = OverlayDriver
