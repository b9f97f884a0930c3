from __future__ import annotations

import pytest
import pytest_asyncio

from dockyard_network_bridge.simple import HostDriver, NullDriver
from dockyard_plugin_sdk.conformance._common import make_context
from dockyard_plugin_sdk.conformance.network import NetworkContract, random_owner


class TestBridge(NetworkContract):
    @pytest.fixture
    def driver(self, bridge_driver):
        return bridge_driver


class TestHost(NetworkContract):
    @pytest_asyncio.fixture
    async def driver(self, tmp_path):
        drv = HostDriver(make_context(tmp_path, owner=random_owner()))
        await drv.setup()
        yield drv
        await drv.close()


class TestNull(NetworkContract):
    @pytest_asyncio.fixture
    async def driver(self, tmp_path):
        drv = NullDriver(make_context(tmp_path, owner=random_owner()))
        await drv.setup()
        yield drv
        await drv.close()
