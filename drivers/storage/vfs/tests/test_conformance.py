"""The vfs driver against the plugin-sdk storage conformance kit."""

from dockyard_plugin_sdk.conformance.storage import StorageContract
from dockyard_storage_vfs.driver import VfsDriver


class TestVfsConformance(StorageContract):
    driver_class = VfsDriver
