from __future__ import annotations

import pytest_asyncio

from dockyard_network_bridge.driver import BridgeDriver
from dockyard_plugin_sdk.conformance._common import make_context
from dockyard_plugin_sdk.conformance.network import (
    TEST_SUBNET_BASE,
    NetworkHarness,
    leftovers,
    random_owner,
)


@pytest_asyncio.fixture
async def bridge_driver(tmp_path):
    """A set-up BridgeDriver with a throwaway owner; at teardown it is closed and nothing named
    after its owner may remain."""
    owner = random_owner()
    drv = BridgeDriver(make_context(tmp_path, owner=owner))
    await drv.setup()
    yield drv
    await drv.close()
    assert leftovers(owner) == []


@pytest_asyncio.fixture
async def harness(bridge_driver):
    """Networks, stand-in containers and endpoints of one test, all removed at teardown."""
    h = NetworkHarness(bridge_driver, TEST_SUBNET_BASE)
    yield h
    errors = await h.teardown()
    assert not errors, errors
