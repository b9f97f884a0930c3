"""The cluster-store kit against the SDK's in-memory store, and the kit's teeth: stores that
break the contract fail it."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from dockyard.specs.cluster import Compare, KeyValue, Listing, Op, TxnResult
from dockyard_plugin_sdk.conformance.cluster import ClusterStoreContract
from dockyard_plugin_sdk.testing.memstore import MemoryClusterStore


class TestMemoryClusterStore(ClusterStoreContract):
    driver_class = MemoryClusterStore
    shared: MemoryClusterStore | None = None

    @pytest.fixture
    def store_url(self) -> str:
        return "memory://local/"

    async def _open(self, root: Path, url: str) -> MemoryClusterStore:
        # racers must share the data, as stores on one etcd do
        if self.shared is None:
            type(self).shared = await MemoryClusterStore.open(root)
            return self.shared
        return self.shared.share()

    @pytest.fixture(autouse=True)
    def _fresh(self) -> None:
        type(self).shared = None


async def test_shared_stores_see_each_other(tmp_path: Path) -> None:
    a = await MemoryClusterStore.open(tmp_path)
    b = a.share()
    await a.put("k", b"v")
    got = await b.get("k")
    assert got is not None and got.value == b"v"


# ---------------------------------------------------------------------------------- the kit fails
class CasIgnored(MemoryClusterStore):
    """Treats every compare as true: racers both win."""

    async def txn(self, compares: list[Compare], success: list[Op], failure: list[Op] = ()) -> TxnResult:
        return await super().txn([], success, failure)


class NeverExpires(MemoryClusterStore):
    def _expire(self) -> None:
        pass


class StaleRevisions(MemoryClusterStore):
    async def get(self, key: str) -> KeyValue | None:
        kv = await super().get(key)
        return None if kv is None else KeyValue(kv.key, kv.value, kv.create_revision, kv.create_revision)


class LeaksOtherPrefixes(MemoryClusterStore):
    async def watch(self, prefix: str, start_revision: int = 0):  # type: ignore[override]
        async for ev in super().watch("", start_revision):
            yield ev


class UnsortedList(MemoryClusterStore):
    async def list(self, prefix: str) -> Listing:
        got = await super().list(prefix)
        return Listing(list(reversed(got.items)), got.revision)


class Quick(ClusterStoreContract):
    expiry_slack = 1.0
    watch_timeout = 0.5


@pytest.mark.parametrize(("store", "case"), [
    (CasIgnored, "test_create_if_absent_wins_once"),
    (CasIgnored, "test_compare_and_swap_on_the_mod_revision"),
    (NeverExpires, "test_a_lease_not_kept_alive_expires_with_its_keys"),
    (StaleRevisions, "test_revisions_move_as_etcds_do"),
    (LeaksOtherPrefixes, "test_watch_ignores_keys_outside_the_prefix"),
    (UnsortedList, "test_list_is_sorted_holds_only_the_prefix_and_its_revision"),
])
async def test_kit_fails_a_store_that_breaks_the_contract(tmp_path: Path, store, case) -> None:
    drv = await store.open(tmp_path)
    with pytest.raises((AssertionError, pytest.fail.Exception)):
        method = getattr(Quick(), case)
        args = (drv, "conformance/t/") if "prefix" in inspect.signature(method).parameters else (drv,)
        await method(*args)
