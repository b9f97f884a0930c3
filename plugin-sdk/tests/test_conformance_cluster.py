"""The cluster kit against a small in-memory node store (test-only), and the kit's teeth:
stores that break the contract fail it."""

from __future__ import annotations

import asyncio
import copy
import inspect
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dockyard.specs import DriverInfo
from dockyard.specs.cluster import Node, NodeStore
from dockyard_plugin_sdk.conformance._common import make_context
from dockyard_plugin_sdk.conformance.cluster import NodeStoreContract


class MemoryNodeStore(NodeStore):
    """Nodes with monotonic-clock expiry, a dict of keys, and per-watch queues."""

    info = DriverInfo(name="memory", kind="cluster", description="in-memory, test only")

    def __init__(self, context) -> None:
        super().__init__(context)
        self._nodes: dict[str, tuple[Node, float]] = {}
        self._kv: dict[str, bytes] = {}
        self._watchers: list[tuple[str, asyncio.Queue[tuple[str, bytes | None]]]] = []

    async def register(self, node: Node, ttl: int) -> None:
        self._nodes[node.name] = (copy.deepcopy(node), time.monotonic() + ttl)

    async def deregister(self, name: str) -> None:
        self._nodes.pop(name, None)

    async def nodes(self) -> list[Node]:
        now = time.monotonic()
        for name in [n for n, (_node, exp) in self._nodes.items() if exp <= now]:
            del self._nodes[name]
        return sorted((copy.deepcopy(n) for n, _e in self._nodes.values()), key=lambda n: n.name)

    async def put(self, key: str, value: bytes) -> None:
        self._kv[key] = bytes(value)
        for prefix, queue in self._watchers:
            if key.startswith(prefix):
                queue.put_nowait((key, bytes(value)))

    async def get(self, key: str) -> bytes | None:
        return self._kv.get(key)

    async def watch(self, prefix: str) -> AsyncIterator[tuple[str, bytes | None]]:
        entry = (prefix, asyncio.Queue())
        self._watchers.append(entry)
        try:
            while True:
                yield await entry[1].get()
        finally:
            self._watchers.remove(entry)


class TestMemoryNodeStore(NodeStoreContract):
    @pytest.fixture
    async def driver(self, tmp_path: Path) -> AsyncIterator[MemoryNodeStore]:
        drv = MemoryNodeStore(make_context(tmp_path))
        await drv.setup()
        yield drv
        await drv.close()


# ---------------------------------------------------------------------------------- the kit fails
class NeverExpires(MemoryNodeStore):
    async def register(self, node: Node, ttl: int) -> None:
        await super().register(node, 10**6)


class ForgetsOnRefresh(MemoryNodeStore):
    async def register(self, node: Node, ttl: int) -> None:
        if node.name in self._nodes:  # keeps the first deadline: refresh does nothing
            return
        await super().register(node, ttl)


class DropsEveryOtherChange(MemoryNodeStore):
    n = 0

    async def put(self, key: str, value: bytes) -> None:
        self.n += 1
        self._kv[key] = value
        if self.n % 2:
            for prefix, queue in self._watchers:
                if key.startswith(prefix):
                    queue.put_nowait((key, value))


class LeaksOtherPrefixes(MemoryNodeStore):
    async def put(self, key: str, value: bytes) -> None:
        self._kv[key] = value
        for _prefix, queue in self._watchers:
            queue.put_nowait((key, value))


class StrEncodes(MemoryNodeStore):
    async def get(self, key: str) -> bytes | None:
        v = self._kv.get(key)
        return None if v is None else v.decode("latin-1")  # type: ignore[return-value]


class Quick(NodeStoreContract):
    expiry_slack = 0.5
    watch_timeout = 0.5


@pytest.mark.parametrize(("store", "case"), [
    (NeverExpires, "test_node_expires_after_its_ttl"),
    (ForgetsOnRefresh, "test_refresh_extends_the_ttl"),
    (DropsEveryOtherChange, "test_watch_yields_changes_under_the_prefix_in_order"),
    (LeaksOtherPrefixes, "test_watch_ignores_keys_outside_the_prefix"),
    (StrEncodes, "test_put_then_get_round_trips_bytes"),
])
async def test_kit_fails_a_store_that_breaks_the_contract(tmp_path: Path, store, case) -> None:
    drv = store(make_context(tmp_path))
    await drv.setup()
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        method = getattr(Quick(), case)
        args = (drv, "conformance/t/") if "prefix" in inspect.signature(method).parameters else (drv,)
        await method(*args)
