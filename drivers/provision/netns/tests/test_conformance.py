from __future__ import annotations

import pytest

from dockyard_plugin_sdk.conformance.provision import ProvisionerContract


class TestNetns(ProvisionerContract):
    @pytest.fixture
    def driver(self, netns_driver):
        return netns_driver
