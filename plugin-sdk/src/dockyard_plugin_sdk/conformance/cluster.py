"""Conformance kit for cluster node stores (``dockyard.drivers.cluster``).

Usage, in the driver's own tests::

    class TestMyStore(NodeStoreContract):
        @pytest.fixture
        async def driver(self, tmp_path):
            drv = MyStore(make_context(tmp_path))
            await drv.setup()
            yield drv
            await drv.close()

The cases follow :class:`dockyard.specs.cluster.NodeStore`: nodes register with a TTL and
expire unless refreshed, ``deregister`` removes one, ``put``/``get`` hold opaque bytes, and
``watch(prefix)`` yields ``(key, value)`` for every change under the prefix made after the
watch is established, in order.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any, ClassVar

import pytest

from dockyard.specs.cluster import Node, NodeStore
from dockyard_plugin_sdk.conformance._common import DriverContract
from dockyard_plugin_sdk.testing import async_wait_for

__all__ = ["NodeStoreContract"]


def _node(name: str, **kw: Any) -> Node:
    return Node(name=name, engine_url=kw.pop("engine_url", f"tcp://192.0.2.10:{2376}"), **kw)


async def _names(driver: NodeStore) -> set[str]:
    return {n.name for n in await driver.nodes()}


class NodeStoreContract(DriverContract):
    """Cases every node store passes."""

    kind: ClassVar[str] = "cluster"
    #: Seconds past a node's TTL within which it must have disappeared (etcd rounds leases up
    #: to its minimum TTL, about 2 s with default timings).
    expiry_slack: ClassVar[float] = 5.0
    #: Seconds a watch may take to deliver one change.
    watch_timeout: ClassVar[float] = 5.0

    @pytest.fixture
    def prefix(self) -> str:
        """A key prefix private to the test, so cases never see each other's keys."""
        return f"conformance/{uuid.uuid4().hex[:8]}/"

    # ------------------------------------------------------------------ nodes
    async def test_registered_node_is_listed_with_its_fields(self, driver: NodeStore) -> None:
        node = _node("dy-n1", labels={"storage": "ssd", "zone": "a"}, cpus=4, memory=8 << 30)
        await driver.register(node, ttl=30)
        listed = {n.name: n for n in await driver.nodes()}
        assert "dy-n1" in listed
        got = listed["dy-n1"]
        assert got.engine_url == node.engine_url
        assert got.labels == {"storage": "ssd", "zone": "a"}
        assert (got.cpus, got.memory) == (4, 8 << 30)

    async def test_several_nodes_are_listed(self, driver: NodeStore) -> None:
        for i in range(3):
            await driver.register(_node(f"dy-m{i}", engine_url=f"tcp://192.0.2.{20 + i}:2376"), ttl=30)
        assert {"dy-m0", "dy-m1", "dy-m2"} <= await _names(driver)

    async def test_register_again_updates_without_duplicating(self, driver: NodeStore) -> None:
        await driver.register(_node("dy-n2", labels={"v": "1"}), ttl=30)
        await driver.register(_node("dy-n2", labels={"v": "2"}, containers=3), ttl=30)
        same = [n for n in await driver.nodes() if n.name == "dy-n2"]
        assert len(same) == 1
        assert same[0].labels == {"v": "2"} and same[0].containers == 3

    async def test_deregister_removes_only_that_node(self, driver: NodeStore) -> None:
        await driver.register(_node("dy-a"), ttl=30)
        await driver.register(_node("dy-b"), ttl=30)
        await driver.deregister("dy-a")
        names = await _names(driver)
        assert "dy-a" not in names and "dy-b" in names

    async def test_node_expires_after_its_ttl(self, driver: NodeStore) -> None:
        ttl = 1
        await driver.register(_node("dy-short"), ttl=ttl)
        await driver.register(_node("dy-long"), ttl=120)
        assert "dy-short" in await _names(driver)
        async def expired() -> bool:
            return "dy-short" not in await _names(driver)

        await async_wait_for(expired, ttl + self.expiry_slack, f"the node with ttl={ttl}s to expire")
        assert "dy-long" in await _names(driver), "expiry removed a node whose ttl had not passed"

    async def test_refresh_extends_the_ttl(self, driver: NodeStore) -> None:
        ttl = 2
        started = time.monotonic()
        await driver.register(_node("dy-kept"), ttl=ttl)
        # time passing is this case's workload (no event marks "the first ttl is over"): the
        # refresh comes after 60% of the ttl, the check after the first ttl has run out
        await asyncio.sleep(ttl * 0.6)
        await driver.register(_node("dy-kept"), ttl=ttl)
        await asyncio.sleep(max(0.0, ttl + 0.3 - (time.monotonic() - started)))
        assert "dy-kept" in await _names(driver), "a node refreshed within its ttl expired"

    # ------------------------------------------------------------------ keys
    async def test_get_of_a_missing_key_is_none(self, driver: NodeStore, prefix: str) -> None:
        assert await driver.get(prefix + "absent") is None

    async def test_put_then_get_round_trips_bytes(self, driver: NodeStore, prefix: str) -> None:
        blob = bytes(range(256)) + b"\x00tail"
        await driver.put(prefix + "blob", blob)
        got = await driver.get(prefix + "blob")
        assert isinstance(got, bytes) and got == blob

    async def test_empty_value_is_not_absent(self, driver: NodeStore, prefix: str) -> None:
        await driver.put(prefix + "empty", b"")
        assert await driver.get(prefix + "empty") == b""

    async def test_put_overwrites(self, driver: NodeStore, prefix: str) -> None:
        await driver.put(prefix + "k", b"one")
        await driver.put(prefix + "k", b"two")
        assert await driver.get(prefix + "k") == b"two"

    async def test_keys_are_independent(self, driver: NodeStore, prefix: str) -> None:
        await driver.put(prefix + "x", b"1")
        await driver.put(prefix + "x/y", b"2")
        await driver.put(prefix + "xy", b"3")
        assert [await driver.get(prefix + k) for k in ("x", "x/y", "xy")] == [b"1", b"2", b"3"]

    # ------------------------------------------------------------------ watch
    async def _first_change(self, it: Any, key: str, driver: NodeStore) -> tuple[str, bytes | None]:
        """Wait for the watch to deliver one change, writing ``key`` until it does (the watch
        may be established lazily, on the first ``__anext__``)."""
        task = asyncio.ensure_future(it.__anext__())
        deadline = time.monotonic() + self.watch_timeout
        n = 0
        while not task.done():
            if time.monotonic() > deadline:
                task.cancel()
                pytest.fail(f"watch delivered nothing within {self.watch_timeout}s of puts to {key}")
            await driver.put(key, b"ready-%d" % n)
            n += 1
            await asyncio.wait({task}, timeout=0.1)
        return task.result()

    async def _next(self, it: Any) -> tuple[str, bytes | None]:
        try:
            return await asyncio.wait_for(it.__anext__(), self.watch_timeout)
        except TimeoutError:
            pytest.fail(f"watch delivered no change within {self.watch_timeout}s")

    async def test_watch_yields_changes_under_the_prefix_in_order(self, driver: NodeStore,
                                                                   prefix: str) -> None:
        it = driver.watch(prefix)
        try:
            key, value = await self._first_change(it, prefix + "ready", driver)
            assert key == prefix + "ready" and value is not None and value.startswith(b"ready-")
            # drain the extra "ready" puts that raced the watch's start
            await driver.put(prefix + "marker", b"m")
            while (await self._next(it))[0] != prefix + "marker":
                pass
            await driver.put(prefix + "a", b"1")
            await driver.put(prefix + "b", b"2")
            await driver.put(prefix + "a", b"3")
            assert [await self._next(it) for _ in range(3)] == [
                (prefix + "a", b"1"), (prefix + "b", b"2"), (prefix + "a", b"3")]
        finally:
            await _close(it)

    async def test_watch_ignores_keys_outside_the_prefix(self, driver: NodeStore, prefix: str) -> None:
        other = prefix.rstrip("/") + "-other/"
        it = driver.watch(prefix)
        try:
            await self._first_change(it, prefix + "ready", driver)
            await driver.put(prefix + "marker", b"m")
            while (await self._next(it))[0] != prefix + "marker":
                pass
            await driver.put(other + "x", b"no")
            await driver.put(prefix + "inside", b"yes")
            assert await self._next(it) == (prefix + "inside", b"yes")
        finally:
            await _close(it)


async def _close(it: Any) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()
