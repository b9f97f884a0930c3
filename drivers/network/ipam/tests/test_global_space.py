"""The global address space (``GlobalDefault``) over an in-memory cluster store: engines that
share a store never hand out one address twice; a lost engine's addresses are freed with its
lease; a restarted engine keeps its own."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from dockyard.errors import Conflict, InvalidArgument, NotFound, Unavailable
from dockyard.specs.cluster import ClusterStore
from dockyard.specs.network import GLOBAL_ADDRESS_SPACE
from dockyard_network_ipam.driver import DefaultIpam
from dockyard_plugin_sdk.conformance._common import make_context
from dockyard_plugin_sdk.testing.memstore import MemoryClusterStore

pytestmark = pytest.mark.asyncio


async def _engine(tmp_path, store, name: str, ttl: int = 10) -> DefaultIpam:
    ctx = make_context(tmp_path / name, owner=f"dy{name}", **{"global-address-ttl": str(ttl)})
    drv = DefaultIpam(dataclasses.replace(ctx, provided={ClusterStore: store}))
    await drv.setup()
    return drv


async def test_two_engines_share_pools_and_never_share_an_address(tmp_path):
    store = await MemoryClusterStore.open()
    a, b = await _engine(tmp_path, store, "a"), await _engine(tmp_path, store.share(), "b")
    assert a.default_address_spaces() == ("LocalDefault", GLOBAL_ADDRESS_SPACE)
    pool = await a.request_pool(subnet="10.40.0.0/28", address_space=GLOBAL_ADDRESS_SPACE)
    assert pool.pool_id.startswith(GLOBAL_ADDRESS_SPACE + "/") and pool.gateway == "10.40.0.1"
    with pytest.raises(Conflict):  # the other engine sees the pool
        await b.request_pool(subnet="10.40.0.0/24", address_space=GLOBAL_ADDRESS_SPACE)
    auto = await b.request_pool(address_space=GLOBAL_ADDRESS_SPACE)
    assert auto.subnet.startswith("10.") and auto.subnet != pool.subnet
    got = await asyncio.gather(*(e.request_address(pool.pool_id) for e in (a, b) * 6))
    assert len(set(got)) == 12 and "10.40.0.1/28" not in got  # 13 usable, the gateway taken
    await a.request_address(pool.pool_id)
    with pytest.raises(Unavailable):
        await b.request_address(pool.pool_id)
    with pytest.raises(Conflict):
        await b.request_address(pool.pool_id, got[0])
    await b.release_address(pool.pool_id, got[0].split("/")[0])
    with pytest.raises(NotFound):
        await b.release_address(pool.pool_id, got[0].split("/")[0])
    assert await b.request_address(pool.pool_id, got[0]) == got[0]
    await a.release_pool(pool.pool_id)
    with pytest.raises(NotFound):
        await b.request_address(pool.pool_id)
    for e in (a, b):
        await e.close()


async def test_a_lost_engine_frees_its_addresses_a_restarted_one_keeps_them(tmp_path):
    store = await MemoryClusterStore.open()
    a = await _engine(tmp_path, store, "a", ttl=2)
    b = await _engine(tmp_path, store.share(), "b", ttl=2)
    pool = await a.request_pool(subnet="10.41.0.0/29", address_space=GLOBAL_ADDRESS_SPACE)
    kept = await a.request_address(pool.pool_id, "10.41.0.2")
    lost = await b.request_address(pool.pool_id, "10.41.0.3")
    await a.close()  # a stops (a restart follows); b dies: its lease is not kept alive
    await b.close()
    a2 = await _engine(tmp_path, store.share(), "a", ttl=2)  # same data dir: takes its address again
    await asyncio.sleep(3)  # b's lease (and a's old one) expire
    c = await _engine(tmp_path, store.share(), "c", ttl=2)
    assert await c.request_address(pool.pool_id, lost) == lost
    with pytest.raises(Conflict):
        await c.request_address(pool.pool_id, kept)
    for e in (a2, c):
        await e.close()


async def test_a_request_meeting_an_expired_lease_renews_it_once(tmp_path):
    """The lease went (the store, or this engine, stood still longer than the TTL) before the
    keepalive noticed: the next address request takes a new lease, puts the engine's addresses
    on it and succeeds (it failed with 'requested lease not found'); requests and the keepalive
    meeting the expiry together take one lease between them."""
    store = await MemoryClusterStore.open()
    a = await _engine(tmp_path, store, "a")
    pool = await a.request_pool(subnet="10.42.0.0/28", address_space=GLOBAL_ADDRESS_SPACE)
    held = (await a.request_address(pool.pool_id)).split("/")[0]
    space = a._global
    old = space._lease.id
    await store.revoke(old)  # what an expiry does: the lease and its keys are gone
    assert await store.get(f"ipam/global/addresses/10.42.0.0~28/{held}") is None
    got = await asyncio.gather(a.request_address(pool.pool_id), a.request_address(pool.pool_id, "10.42.0.9"))
    assert got[1] == "10.42.0.9/28" and len({got[0], got[1], held}) == 3, got
    new = space._lease.id
    assert await space._lease.renew(old) == new  # the keepalive meeting the same expiry later
    assert new != old and set(store._data.leases) == {new}, store._data.leases
    for addr in (held, got[0].split("/")[0], "10.42.0.9"):
        kv = await store.get(f"ipam/global/addresses/10.42.0.0~28/{addr}")
        assert kv is not None and kv.lease == new, (addr, kv)
    await a.close()


async def test_without_a_cluster_store_the_global_space_is_unavailable(tmp_path):
    drv = DefaultIpam(make_context(tmp_path))
    await drv.setup()
    with pytest.raises(Exception, match="cluster store"):
        await drv.request_pool(address_space=GLOBAL_ADDRESS_SPACE)
    with pytest.raises(InvalidArgument):
        await drv.request_pool(address_space="Elsewhere")
