"""``dockyard.specs.cluster.KeptLease``: the lease an engine keeps alive for the records it
publishes (global IPAM addresses, overlay endpoints, global-scope plugin records), renewed
once, with those records put again, when the store forgot it."""

from __future__ import annotations

import asyncio

from dockyard.errors import StoreUnavailable
from dockyard.specs.cluster import KeptLease
from dockyard_plugin_sdk.testing.memstore import MemoryClusterStore


class Holder:
    """What a driver keeps: its records, republished on a new lease."""

    def __init__(self, store: MemoryClusterStore) -> None:
        self.store = store
        self.records: dict[str, bytes] = {}
        self.republished: list[int] = []
        self.fail_next = False

    async def republish(self, lease: int) -> None:
        if self.fail_next:
            self.fail_next = False
            raise StoreUnavailable("etcd: no member answers")
        self.republished.append(lease)
        for key, value in list(self.records.items()):
            await self.store.put(key, value, lease)


class SlowGrant:
    """A store whose grant takes a moment (a round trip), so racing callers interleave."""

    def __init__(self, store: MemoryClusterStore) -> None:
        self.store = store

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)

    async def grant(self, ttl: int) -> object:
        await asyncio.sleep(0.01)
        return await self.store.grant(ttl)


async def test_the_keepalive_keeps_it_and_a_put_is_on_it():
    store = await MemoryClusterStore.open()
    holder = Holder(store)
    kept = KeptLease(SlowGrant(store), 2, holder.republish, name="t")  # type: ignore[arg-type]
    first, again = await asyncio.gather(kept.grant(), kept.grant())
    assert again == first and await kept.grant() == first and set(store._data.leases) == {first}  # taken once
    holder.records["k"] = b"v"
    await kept.put("k", b"v")
    await asyncio.sleep(2.6)  # past the TTL: only the keepalive keeps it
    kv = await store.get("k")
    assert kv is not None and kv.lease == first and kept.id == first and holder.republished == []
    await kept.close()
    await kept.close()  # twice is fine


async def test_puts_meeting_an_expiry_together_take_one_new_lease_with_every_record_on_it():
    store = await MemoryClusterStore.open()
    holder = Holder(store)
    kept = KeptLease(store, 10, holder.republish, name="t")
    old = await kept.grant()
    holder.records["a"] = b"1"
    await kept.put("a", b"1")
    await store.revoke(old)  # what an expiry does: the lease and its keys are gone
    holder.records.update(b=b"2", c=b"3")
    await asyncio.gather(kept.put("b", b"2"), kept.put("c", b"3"))
    assert kept.id != old and holder.republished == [kept.id] and set(store._data.leases) == {kept.id}
    for key in "abc":
        kv = await store.get(key)
        assert kv is not None and kv.lease == kept.id, (key, kv)
    assert await kept.renew(old) == kept.id  # the keepalive meeting the same expiry later: no new lease
    assert holder.republished == [kept.id]
    await kept.close()


async def test_a_record_dropped_meanwhile_is_not_put_again():
    store = await MemoryClusterStore.open()
    holder = Holder(store)
    kept = KeptLease(store, 10, holder.republish, name="t")
    await store.revoke(await kept.grant())
    await kept.put("gone", b"x", still=lambda: False)  # the holder no longer has it
    assert await store.get("gone") is None and kept.id in store._data.leases
    await kept.close()


async def test_the_keepalive_renews_an_expired_lease_and_a_failed_renewal_is_tried_again():
    store = await MemoryClusterStore.open()
    holder = Holder(store)
    kept = KeptLease(store, 2, holder.republish, name="t")
    old = await kept.grant()
    holder.records["k"] = b"v"
    await kept.put("k", b"v")
    holder.fail_next = True  # the first renewal's republish fails: the lease stays the old id
    await store.revoke(old)

    async def renewed() -> None:
        while not holder.republished:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(renewed(), 5)  # 2/3 s per round: failed once, renewed next round
    kv = await store.get("k")
    assert kept.id != old and kv is not None and kv.lease == kept.id
    await kept.close()
