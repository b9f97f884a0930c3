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


# ---------------------------------------------------------------- ClusterNetworkRecords
def _doc_event(kind: str, key: str, doc: dict | None, rev: int, created: int = 0) -> WatchEvent:
    import json

    value = json.dumps(doc).encode() if doc is not None else b""
    return WatchEvent(kind, KeyValue(key, value, rev, created or rev))  # type: ignore[arg-type]


def test_network_records_follow_definitions_and_other_hosts_endpoints() -> None:
    from dockyard.specs.network import ClusterNetworkRecords

    recs = ClusterNetworkRecords("ov/", lambda doc: doc.get("node") == "me")
    assert recs.apply(_doc_event("put", "ov/networks/n1", {"name": "a"}, 5)) == ("network", "n1")
    assert recs.apply(_doc_event("put", "ov/endpoints/n1/e1", {"node": "me"}, 6)) is None  # ours
    assert recs.apply(_doc_event("put", "ov/endpoints/n1/e2", {"node": "h2"}, 9, created=7)) == ("peers", "n1")
    assert recs.endpoints == {"n1": {"e2": {"node": "h2", "rev": 7}}}  # rev: when first published
    assert recs.apply(_doc_event("delete", "ov/endpoints/n1/e1", None, 10)) is None  # not held: no change
    assert recs.apply(_doc_event("put", "ov/other/x", {}, 11)) is None
    assert recs.apply(_doc_event("delete", "ov/networks/n1", None, 12)) == ("network", "n1")
    assert recs.defs == {} and recs.endpoints == {}


def test_network_records_reload_in_place_and_say_what_changed() -> None:
    import json

    from dockyard.specs.network import ClusterNetworkRecords

    recs = ClusterNetworkRecords("ov/", lambda doc: False)
    defs, endpoints = recs.defs, recs.endpoints  # aliases a driver keeps stay valid
    recs.apply(_doc_event("put", "ov/networks/n1", {"v": 1}, 1))
    recs.apply(_doc_event("put", "ov/networks/n2", {"v": 1}, 2))
    recs.apply(_doc_event("put", "ov/endpoints/n1/e1", {"node": "h2"}, 3))
    listing = [KeyValue("ov/networks/n1", json.dumps({"v": 1}).encode(), 1, 1),
               KeyValue("ov/networks/n3", json.dumps({"v": 1}).encode(), 8, 8),
               KeyValue("ov/endpoints/n3/e9", json.dumps({"node": "h3"}).encode(), 9, 9)]
    changed, before = recs.reload(listing)
    assert changed == ["n2", "n3"]  # n2 went, n3 came; n1 is the same
    assert before == {"n1": {"e1": {"node": "h2", "rev": 3}}}
    assert recs.defs is defs and recs.endpoints is endpoints
    assert set(defs) == {"n1", "n3"} and endpoints == {"n3": {"e9": {"node": "h3", "rev": 9}}}
