from __future__ import annotations

import pytest_asyncio

from dockyard_network_cni.driver import CniDriver
from dockyard_plugin_sdk.conformance._common import make_context
from dockyard_plugin_sdk.conformance.network import NetworkContract, random_owner


class TestCni(NetworkContract):
    @pytest_asyncio.fixture
    async def driver(self, tmp_path):
        drv = CniDriver(make_context(tmp_path, owner=random_owner()))
        await drv.setup()
        yield drv
        await drv.close()
