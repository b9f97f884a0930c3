"""The network kit against the overlay driver on one host: an in-memory cluster store, the
tunnel endpoint on loopback (no peer: nothing is sent). Port publishing and the embedded DNS
are not the overlay's (the daemon's resolver serves its names), so those cases skip."""

from __future__ import annotations

import dataclasses

import pytest_asyncio

from dockyard.specs.cluster import ClusterStore
from dockyard_network_overlay.driver import OverlayDriver
from dockyard_plugin_sdk.conformance._common import make_context
from dockyard_plugin_sdk.conformance.network import NetworkContract, random_owner
from dockyard_plugin_sdk.testing.memstore import MemoryClusterStore


class TestOverlay(NetworkContract):
    @pytest_asyncio.fixture
    async def driver(self, tmp_path):
        store = await MemoryClusterStore.open()
        context = dataclasses.replace(make_context(tmp_path, owner=random_owner(), vtep="127.0.0.1"),
                                      provided={ClusterStore: store})
        drv = OverlayDriver(context)
        await drv.setup()
        yield drv
        await drv.close()
        await store.close()
