"""``dockyard.specs.cluster.follow``: the watch loop every cluster-wide cache runs (overlay
peers, global-scope plugin networks, swarm reservations): events in order, a relist after a
compaction, a retry after any other failure, from where it stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from dockyard.errors import StoreCompacted, StoreUnavailable
from dockyard.specs.cluster import KeyValue, Listing, WatchEvent, follow


def _put(key: str, rev: int) -> WatchEvent:
    return WatchEvent("put", KeyValue(key, b"{}", rev, rev))


class ScriptedStore:
    """A store whose successive watches follow a script: each entry is the events to yield and
    then what to raise (None: hang until cancelled). Records what was asked."""

    def __init__(self, script: list[tuple[list[WatchEvent], BaseException | None]], listing: Listing) -> None:
        self.script = script
        self.listing = listing
        self.watched_from: list[int] = []
        self.lists = 0
        self.fail_list_once = False

    async def list(self, prefix: str) -> Listing:
        self.lists += 1
        if self.fail_list_once:
            self.fail_list_once = False
            raise StoreUnavailable("etcd: no member answers")
        return self.listing

    async def watch(self, prefix: str, start_revision: int = 0) -> AsyncIterator[WatchEvent]:
        self.watched_from.append(start_revision)
        events, exc = self.script.pop(0) if self.script else ([], None)
        for ev in events:
            yield ev
        if exc is not None:
            raise exc
        await asyncio.Event().wait()


async def _run(store: ScriptedStore, start: int, settle: int = 20) -> tuple[list[int], list[int]]:
    seen: list[int] = []
    relisted: list[int] = []

    async def on_event(ev: WatchEvent) -> None:
        seen.append(ev.revision)

    async def on_relist(listing: Listing) -> None:
        relisted.append(listing.revision)

    task = asyncio.create_task(follow(store, "p/", start, on_event, on_relist, name="test", pause=0.01))  # type: ignore[arg-type]
    for _ in range(settle):
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    return seen, relisted


async def test_a_compaction_relists_then_follows_from_after_the_listing() -> None:
    listing = Listing([KeyValue("p/a", b"{}", 40, 9)], 40)
    store = ScriptedStore([([_put("p/a", 5)], StoreCompacted("compacted", 30)), ([_put("p/b", 41)], None)], listing)
    seen, relisted = await _run(store, 5)
    assert seen == [5, 41]
    assert relisted == [40]
    assert store.watched_from == [5, 41]


async def test_a_failure_watches_again_from_where_it_stopped() -> None:
    store = ScriptedStore([([_put("p/a", 7), _put("p/b", 8)], StoreUnavailable("gone")), ([], None)],
                          Listing([], 0))
    seen, relisted = await _run(store, 7)
    assert seen == [7, 8]
    assert relisted == []
    assert store.watched_from == [7, 9]  # nothing missed, nothing repeated


async def test_a_failed_relist_is_tried_again_before_watching() -> None:
    listing = Listing([], 12)
    store = ScriptedStore([([], StoreCompacted("compacted", 10)), ([], None)], listing)
    store.fail_list_once = True
    seen, relisted = await _run(store, 3)
    assert store.lists == 2
    assert relisted == [12]
    assert store.watched_from == [3, 13]
