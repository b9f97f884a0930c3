"""The SDK's network and volume kits against the remote adapters, each case with its own plugin
process from ``tests/plugins`` (stdlib only) started by the kit's Docker-plugin mixin."""

from __future__ import annotations

import sys
from pathlib import Path

from dockyard_plugin_sdk.conformance.network import NetworkContract
from dockyard_plugin_sdk.conformance.remote import DockerPluginContract
from dockyard_plugin_sdk.conformance.volume import VolumeContract

PLUGINS = Path(__file__).parent / "plugins"


class TestRemoteVolume(DockerPluginContract, VolumeContract):
    plugin_command = [sys.executable, str(PLUGINS / "volplugin.py"), "{socket}", "{root}"]


class TestRemoteNetwork(DockerPluginContract, NetworkContract):
    plugin_command = [sys.executable, str(PLUGINS / "netplugin.py"), "{socket}", "{owner}"]
    plugin_capabilities = frozenset({"connectivity", "internal"})
