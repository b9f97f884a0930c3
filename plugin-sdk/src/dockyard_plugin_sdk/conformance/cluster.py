"""Conformance kit for cluster stores (``dockyard.drivers.cluster``).

Usage, in the driver's own tests (the store gets its URL from the ``store_url`` fixture)::

    class TestMyStore(ClusterStoreContract):
        driver_class = MyStore

        @pytest.fixture
        def store_url(self, etcd):  # the SDK's real etcd fixture, for an etcd-speaking store
            return etcd.url()

The cases follow :class:`dockyard.specs.cluster.ClusterStore`, etcd's shape: keys hold opaque
bytes with revisions (``mod_revision`` moves on every change, ``create_revision`` and
``version`` as etcd keeps them); ``list`` reads a prefix at a revision; a transaction runs its
success or failure ops atomically, and racing transactions comparing one key never both win
(create-if-absent and compare-and-swap on the mod revision); keys on a lease go when it
expires or is revoked, ``keepalive`` extends it; ``watch`` yields every change under a prefix
in revision order, from now or from an earlier revision. Every case works under a fresh
``prefix`` fixture, so cases never see each other's keys.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import pytest_asyncio

from dockyard.errors import LeaseNotFound, TxnFailed
from dockyard.specs import DriverContext
from dockyard.specs.cluster import ClusterStore, Compare, Delete, Get, Put, WatchEvent
from dockyard_plugin_sdk.conformance._common import DriverContract
from dockyard_plugin_sdk.testing import async_wait_for

__all__ = ["ClusterStoreContract"]


class ClusterStoreContract(DriverContract):
    """Cases every cluster store passes."""

    kind: ClassVar[str] = "cluster"
    #: Seconds past a lease's TTL within which its keys must be gone (etcd rounds a TTL up to
    #: its minimum, about 2 s with the test timings, and checks expiry every 500 ms).
    expiry_slack: ClassVar[float] = 4.0
    #: Seconds a watch may take to deliver one change.
    watch_timeout: ClassVar[float] = 5.0
    #: Concurrent transactions in the race cases.
    racers: ClassVar[int] = 8

    @pytest.fixture
    def store_url(self) -> str:
        """The ``cluster-store`` URL the store under test is opened on."""
        raise NotImplementedError("a cluster-store conformance subclass supplies `store_url` "
                                  "(or its own `driver` fixture)")

    @pytest_asyncio.fixture
    async def driver(self, tmp_path: Path, store_url: str) -> AsyncIterator[ClusterStore]:
        if self.driver_class is None:
            raise NotImplementedError("a conformance subclass must set `driver_class` or supply `driver`")
        drv = await self._open(tmp_path / "driver", store_url)
        try:
            yield drv
        finally:
            await drv.close()

    async def _open(self, root: Path, url: str) -> ClusterStore:
        assert self.driver_class is not None
        root.mkdir(parents=True, exist_ok=True)
        drv = self.driver_class(DriverContext(data_dir=root, run_dir=root, owner="dytest0",
                                              options=dict(self.driver_options),
                                              daemon_config={"cluster-store": url}))
        await drv.setup()
        assert isinstance(drv, ClusterStore)
        return drv

    @pytest.fixture
    def prefix(self) -> str:
        """A key prefix private to the case."""
        return f"conformance/{uuid.uuid4().hex[:8]}/"

    # ------------------------------------------------------------------ keys
    async def test_get_of_a_missing_key_is_none(self, driver: ClusterStore, prefix: str) -> None:
        assert await driver.get(prefix + "absent") is None

    async def test_put_then_get_round_trips_bytes(self, driver: ClusterStore, prefix: str) -> None:
        blob = bytes(range(256)) + b"\x00tail"
        await driver.put(prefix + "blob", blob)
        got = await driver.get(prefix + "blob")
        assert got is not None and isinstance(got.value, bytes) and got.value == blob
        assert got.key == prefix + "blob"

    async def test_empty_value_is_not_absent(self, driver: ClusterStore, prefix: str) -> None:
        await driver.put(prefix + "empty", b"")
        got = await driver.get(prefix + "empty")
        assert got is not None and got.value == b""

    async def test_revisions_move_as_etcds_do(self, driver: ClusterStore, prefix: str) -> None:
        r1 = await driver.put(prefix + "k", b"one")
        first = await driver.get(prefix + "k")
        assert first is not None and first.mod_revision == r1 == first.create_revision and first.version == 1
        r2 = await driver.put(prefix + "k", b"two")
        second = await driver.get(prefix + "k")
        assert r2 > r1
        assert second is not None and second.value == b"two"
        assert (second.mod_revision, second.create_revision, second.version) == (r2, r1, 2)

    async def test_keys_are_independent(self, driver: ClusterStore, prefix: str) -> None:
        for k, v in (("x", b"1"), ("x/y", b"2"), ("xy", b"3")):
            await driver.put(prefix + k, v)
        got = [await driver.get(prefix + k) for k in ("x", "x/y", "xy")]
        assert [kv.value if kv else None for kv in got] == [b"1", b"2", b"3"]

    async def test_delete_one_key_or_a_prefix(self, driver: ClusterStore, prefix: str) -> None:
        for k in ("a", "d/1", "d/2", "dz"):
            await driver.put(prefix + k, b"v")
        assert await driver.delete(prefix + "a") == 1
        assert await driver.delete(prefix + "a") == 0
        assert await driver.get(prefix + "a") is None
        assert await driver.delete(prefix + "d/", prefix=True) == 2
        assert [kv.key for kv in (await driver.list(prefix)).items] == [prefix + "dz"]

    async def test_list_is_sorted_holds_only_the_prefix_and_its_revision(self, driver: ClusterStore,
                                                                          prefix: str) -> None:
        last = 0
        for k in ("n/b", "n/a", "n/c", "nx", "m"):
            last = await driver.put(prefix + k, k.encode())
        listing = await driver.list(prefix + "n/")
        assert [kv.key for kv in listing] == [prefix + "n/a", prefix + "n/b", prefix + "n/c"]
        assert [kv.value for kv in listing] == [b"n/a", b"n/b", b"n/c"]
        assert listing.revision >= last
        assert len(await driver.list(prefix + "none/")) == 0

    # ------------------------------------------------------------------ transactions
    async def test_create_if_absent_wins_once(self, driver: ClusterStore, prefix: str) -> None:
        key = prefix + "names/web"
        first = await driver.txn([Compare.absent(key)], [Put(key, b"c1")], [Get(key)])
        second = await driver.txn([Compare.absent(key)], [Put(key, b"c2")], [Get(key)])
        assert first.succeeded and not second.succeeded
        assert [kv.value for kv in second.results[0]] == [b"c1"], "the failure branch reads the winner"
        got = await driver.get(key)
        assert got is not None and got.value == b"c1"
        with pytest.raises(TxnFailed):
            second.check("name web")
        assert first.check() is first

    async def test_compare_and_swap_on_the_mod_revision(self, driver: ClusterStore, prefix: str) -> None:
        key = prefix + "reservations/n1"
        await driver.put(key, b'{"cpus": 0}')
        seen = await driver.get(key)
        assert seen is not None
        won = await driver.txn([Compare.unchanged(key, seen.mod_revision)], [Put(key, b'{"cpus": 1}')])
        assert won.succeeded and won.revision > seen.mod_revision
        stale = await driver.txn([Compare.unchanged(key, seen.mod_revision)], [Put(key, b'{"cpus": 9}')])
        assert not stale.succeeded
        got = await driver.get(key)
        assert got is not None and got.value == b'{"cpus": 1}' and got.mod_revision == won.revision
        # mod revision 0 compares "absent"
        assert (await driver.txn([Compare.unchanged(prefix + "new", 0)], [Put(prefix + "new", b"x")])).succeeded

    async def test_value_and_version_compares(self, driver: ClusterStore, prefix: str) -> None:
        key = prefix + "leader"
        await driver.put(key, b"m1")
        assert (await driver.txn([Compare.value_is(key, b"m1")], [Delete(key)])).succeeded
        await driver.put(key, b"m2")
        assert not (await driver.txn([Compare.value_is(key, b"m1")], [Delete(key)])).succeeded
        assert (await driver.txn([Compare(key, "version", ">", 0)], [])).succeeded
        assert not (await driver.txn([Compare(prefix + "nope", "version", ">", 0)], [])).succeeded

    async def test_a_transaction_is_all_or_nothing(self, driver: ClusterStore, prefix: str) -> None:
        a, b, c = prefix + "a", prefix + "b", prefix + "c"
        await driver.put(c, b"old")
        res = await driver.txn([Compare.absent(a), Compare.absent(b)],
                               [Put(a, b"1"), Put(b, b"2"), Delete(c), Get(prefix, prefix=True)])
        assert res.succeeded and len(res.results) == 4
        assert [kv.key for kv in res.results[3]] == [a, b], "a Get sees the transaction's own writes"
        assert {kv.mod_revision for kv in res.results[3]} == {res.revision}, "one revision for all"
        assert await driver.get(c) is None
        res = await driver.txn([Compare.absent(prefix + "z"), Compare.absent(a)],
                               [Put(prefix + "z", b"never")])
        assert not res.succeeded and await driver.get(prefix + "z") is None

    async def test_racing_creates_never_both_win(self, driver: ClusterStore, store_url: str,
                                                 tmp_path: Path, prefix: str) -> None:
        """Several stores (managers) race to create one name: exactly one wins."""
        others = [await self._open(tmp_path / f"racer{i}", store_url) for i in range(2)]
        try:
            stores = [driver, *others]
            key = prefix + "names/db"
            results = await asyncio.gather(*(
                stores[i % len(stores)].txn([Compare.absent(key)], [Put(key, b"%d" % i)])
                for i in range(self.racers)))
            winners = [i for i, r in enumerate(results) if r.succeeded]
            assert len(winners) == 1, f"{len(winners)} creates of one key won"
            got = await driver.get(key)
            assert got is not None and got.value == b"%d" % winners[0]
        finally:
            for o in others:
                await o.close()

    async def test_racing_compare_and_swaps_never_both_win(self, driver: ClusterStore, store_url: str,
                                                           tmp_path: Path, prefix: str) -> None:
        """Racers that read one reservation each try to add to it: one wins per round, and no
        increment is lost when the losers read again and retry."""
        others = [await self._open(tmp_path / f"racer{i}", store_url) for i in range(2)]
        try:
            stores = [driver, *others]
            key = prefix + "reservations/n1"
            await driver.put(key, b"0")
            seen = await driver.get(key)
            assert seen is not None
            results = await asyncio.gather(*(
                stores[i % len(stores)].txn([Compare.unchanged(key, seen.mod_revision)], [Put(key, b"%d" % (i + 1))])
                for i in range(self.racers)))
            assert sum(r.succeeded for r in results) == 1

            async def add_one(store: ClusterStore) -> int:
                tries = 0
                while True:
                    tries += 1
                    cur = await store.get(key)
                    assert cur is not None
                    res = await store.txn([Compare.unchanged(key, cur.mod_revision)],
                                          [Put(key, b"%d" % (int(cur.value) + 1))])
                    if res.succeeded:
                        return tries

            start = int((await driver.get(key)).value)  # type: ignore[union-attr]
            await asyncio.gather(*(add_one(stores[i % len(stores)]) for i in range(self.racers)))
            final = await driver.get(key)
            assert final is not None and int(final.value) == start + self.racers, "an increment was lost"
        finally:
            for o in others:
                await o.close()

    # ------------------------------------------------------------------ leases
    async def test_keys_on_a_revoked_lease_are_gone(self, driver: ClusterStore, prefix: str) -> None:
        lease = await driver.grant(30)
        assert lease.id and lease.ttl >= 30
        await driver.put(prefix + "nodes/n1", b"{}", lease)
        await driver.put(prefix + "other", b"stays")
        got = await driver.get(prefix + "nodes/n1")
        assert got is not None and got.lease == lease.id
        assert await driver.keepalive(lease) > 0
        await driver.revoke(lease)
        assert await driver.get(prefix + "nodes/n1") is None
        assert await driver.get(prefix + "other") is not None
        with pytest.raises(LeaseNotFound):
            await driver.keepalive(lease)
        with pytest.raises(LeaseNotFound):
            await driver.put(prefix + "late", b"x", lease)
        await driver.revoke(lease)  # twice: no error

    async def test_a_lease_not_kept_alive_expires_with_its_keys(self, driver: ClusterStore, prefix: str) -> None:
        short = await driver.grant(1)
        kept = await driver.grant(1)
        await driver.put(prefix + "short", b"x", short)
        await driver.put(prefix + "kept", b"y", kept)

        async def gone() -> bool:
            await driver.keepalive(kept)
            return await driver.get(prefix + "short") is None

        await async_wait_for(gone, short.ttl + self.expiry_slack, "the key on an expired lease to go")
        assert await driver.get(prefix + "kept") is not None, "a lease kept alive expired"
        with pytest.raises(LeaseNotFound):
            await driver.keepalive(short)
        await driver.revoke(kept)

    # ------------------------------------------------------------------ watch
    async def _next(self, it: Any) -> WatchEvent:
        try:
            ev = await asyncio.wait_for(it.__anext__(), self.watch_timeout)
        except TimeoutError:
            pytest.fail(f"watch delivered no change within {self.watch_timeout}s")
        assert isinstance(ev, WatchEvent)
        return ev

    async def _started(self, driver: ClusterStore, prefix: str) -> tuple[Any, int]:
        """A watch of ``prefix`` from the next revision (established before anything is put)."""
        rev = (await driver.list(prefix)).revision
        return driver.watch(prefix, rev + 1), rev

    async def test_watch_yields_puts_and_deletes_in_order(self, driver: ClusterStore, prefix: str) -> None:
        it, _ = await self._started(driver, prefix)
        try:
            ra = await driver.put(prefix + "a", b"1")
            await driver.put(prefix + "b", b"2")
            await driver.put(prefix + "a", b"3")
            await driver.delete(prefix + "b")
            got = [await self._next(it) for _ in range(4)]
            assert [(e.type, e.key, e.kv.value) for e in got] == [
                ("put", prefix + "a", b"1"), ("put", prefix + "b", b"2"),
                ("put", prefix + "a", b"3"), ("delete", prefix + "b", b"")]
            assert got[0].revision == ra
            assert [e.revision for e in got] == sorted(e.revision for e in got)
        finally:
            await it.aclose()

    async def test_watch_from_now_sees_later_changes(self, driver: ClusterStore, prefix: str) -> None:
        await driver.put(prefix + "before", b"old")
        it = driver.watch(prefix)
        try:
            first = asyncio.ensure_future(it.__anext__())
            await asyncio.sleep(0)  # let the watch start; it may also start lazily
            n = 0
            while not first.done():  # keep writing until the watch is established
                await driver.put(prefix + "after", b"%d" % n)
                n += 1
                await asyncio.wait({first}, timeout=0.1)
                assert n < self.watch_timeout * 10, "watch from now delivered nothing"
            assert first.result().key == prefix + "after", "a watch from now replayed an older change"
        finally:
            await it.aclose()

    async def test_watch_ignores_keys_outside_the_prefix(self, driver: ClusterStore, prefix: str) -> None:
        other = prefix.rstrip("/") + "-other/"
        it, _ = await self._started(driver, prefix)
        try:
            await driver.put(other + "x", b"no")
            await driver.put(prefix.rstrip("/"), b"no")
            await driver.put(prefix + "inside", b"yes")
            ev = await self._next(it)
            assert (ev.key, ev.kv.value) == (prefix + "inside", b"yes")
        finally:
            await it.aclose()

    async def test_watch_from_a_past_revision_replays_history(self, driver: ClusterStore, prefix: str) -> None:
        await driver.put(prefix + "a", b"1")
        rb = await driver.put(prefix + "b", b"2")
        await driver.put(prefix + "c", b"3")
        it = driver.watch(prefix, rb)
        try:
            got = [await self._next(it) for _ in range(2)]
            assert [(e.key, e.kv.value) for e in got] == [(prefix + "b", b"2"), (prefix + "c", b"3")]
        finally:
            await it.aclose()

    async def test_watch_sees_a_lease_revocation_as_deletes(self, driver: ClusterStore, prefix: str) -> None:
        lease = await driver.grant(30)
        await driver.put(prefix + "n1", b"x", lease)
        it, _ = await self._started(driver, prefix)
        try:
            await driver.revoke(lease)
            ev = await self._next(it)
            assert (ev.type, ev.key) == ("delete", prefix + "n1")
        finally:
            await it.aclose()

    async def test_a_transaction_is_seen_whole_by_a_watch(self, driver: ClusterStore, prefix: str) -> None:
        it, _ = await self._started(driver, prefix)
        try:
            res = await driver.txn([], [Put(prefix + "x", b"1"), Put(prefix + "y", b"2")])
            got = [await self._next(it) for _ in range(2)]
            assert {e.key for e in got} == {prefix + "x", prefix + "y"}
            assert {e.revision for e in got} == {res.revision}
        finally:
            await it.aclose()
