from __future__ import annotations

import pytest_asyncio

from dockyard_network_ipam.driver import DefaultIpam
from dockyard_plugin_sdk.conformance._common import make_context
from dockyard_plugin_sdk.conformance.network import TEST_SUBNET_BASE, IpamContract


class TestDefaultIpam(IpamContract):
    @pytest_asyncio.fixture
    async def driver(self, tmp_path):
        drv = DefaultIpam(make_context(tmp_path, **{"default-address-pools": f"{TEST_SUBNET_BASE}:24"}))
        await drv.setup()
        yield drv
        await drv.close()

    @pytest_asyncio.fixture
    async def driver_factory(self, tmp_path):
        async def make():
            drv = DefaultIpam(make_context(tmp_path, **{"default-address-pools": f"{TEST_SUBNET_BASE}:24"}))
            await drv.setup()
            return drv
        return make
