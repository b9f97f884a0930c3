"""The overlay driver's view of the cluster store, without a data plane: an in-memory store
and endpoints other engines published."""

from __future__ import annotations

import asyncio
import dataclasses
import json

import pytest

from dockyard.errors import Conflict, InvalidArgument, Unavailable
from dockyard.model import IpamPool, Network
from dockyard.specs.cluster import ClusterStore
from dockyard_network_overlay.driver import OverlayDriver
from dockyard_plugin_sdk.conformance._common import make_context
from dockyard_plugin_sdk.testing.memstore import MemoryClusterStore

pytestmark = pytest.mark.asyncio


async def _driver(tmp_path, store, vtep="127.0.0.1") -> OverlayDriver:
    ctx = make_context(tmp_path, owner="dyunit01", vtep=vtep)
    drv = OverlayDriver(dataclasses.replace(ctx, provided={ClusterStore: store}))
    await drv.setup()
    return drv


def _net(name: str = "ov", **options: str) -> Network:
    return Network(id=name * 8, name=name, driver="overlay", ipam_pools=[IpamPool("10.50.0.0/24", "10.50.0.1")],
                   options=dict(options), extra={"pool_ids": ["GlobalDefault/10.50.0.0/24"]})


async def _publish(store, net_id: str, ep: str, name: str, ip: str, vtep: str) -> None:
    doc = {"container_id": ep * 4, "name": name, "aliases": ["svc"], "ipv4": ip, "mac": "02:42:0a:32:00:09",
           "vtep": vtep}
    await store.put(f"overlay/endpoints/{net_id}/{ep}", json.dumps(doc).encode())


async def test_definitions_vnis_and_the_newest_peer_holds_a_name(tmp_path):
    store = await MemoryClusterStore.open()
    drv = await _driver(tmp_path / "a", store)
    changes = drv.cluster_changes()
    net = _net()
    assert (await drv.create_network(net))["vni"] == 4096
    assert (await drv.create_network(_net("ow")))["vni"] == 4097
    twin = dataclasses.replace(_net("ow"), id="tw" * 32)
    with pytest.raises(Conflict, match="already exists in the cluster"):  # another engine's "ow"
        await drv.create_network(twin)
    first = await asyncio.wait_for(changes.__anext__(), 2)
    assert first.kind == "network" and first.network is not None and first.network.scope == "global"
    assert {n.name for n in await drv.cluster_networks()} == {"ov", "ow"}
    await _publish(store, net.id, "old", "mover", "10.50.0.20/24", "10.9.9.2")
    await _publish(store, net.id, "new", "mover", "10.50.0.10/24", "10.9.9.3")
    await _publish(store, net.id, "mine", "me", "10.50.0.30/24", "127.0.0.1")  # this engine's own

    async def settled() -> None:
        while len(drv.peers(net.id)) < 2:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(settled(), 2)
    peers = {p.endpoint_id: p for p in drv.peers(net.id)}
    assert set(peers) == {"old", "new"}  # not its own
    assert peers["new"].container_name == "mover" and peers["old"].container_name == ""
    assert peers["old"].aliases == ("svc",)  # aliases stay shared
    await store.delete(f"overlay/endpoints/{net.id}/new")
    await asyncio.wait_for(_until(lambda: [p.container_name for p in drv.peers(net.id)] == ["mover"]), 2)
    await drv.close()


async def _until(check) -> None:
    while not check():
        await asyncio.sleep(0.01)


async def test_options_are_checked(tmp_path):
    store = await MemoryClusterStore.open()
    drv = await _driver(tmp_path, store)
    with pytest.raises(InvalidArgument, match="IPsec"):
        await drv.create_network(_net(encrypted=""))
    with pytest.raises(InvalidArgument, match="unknown"):
        await drv.create_network(_net(color="blue"))
    with pytest.raises(InvalidArgument, match="datapath"):
        await drv.create_network(_net(**{"dockyard.overlay.datapath": "ipvlan"}))
    assert (await drv.create_network(_net(**{"com.docker.network.driver.overlay.vxlanid_list": "5000"})))["vni"] == 5000
    await drv.close()


async def test_without_an_advertise_address_the_overlay_says_so(tmp_path):
    store = await MemoryClusterStore.open()
    drv = await _driver(tmp_path, store, vtep="")
    with pytest.raises(Unavailable, match="cluster-advertise"):
        await drv.create_network(_net())
    await drv.close()


async def test_a_join_meeting_an_expired_lease_renews_it_once(tmp_path):
    """The lease went (the store, or this engine, stood still longer than the TTL) before the
    keepalive noticed: the join's put takes a new lease, with this engine's other endpoints
    published again on it (it failed with 'requested lease not found'); joins meeting the
    expiry together take one lease between them."""
    store = await MemoryClusterStore.open()
    drv = await _driver(tmp_path, store)

    def ep(n: int) -> dict[str, str]:
        return {"network_id": "ov" * 8, "container_id": f"c{n}" * 32, "name": f"c{n}", "ipv4": f"10.50.0.{n}/24",
                "mac": f"02:42:0a:32:00:{n:02x}"}

    drv._doc["endpoints"]["e1"] = ep(1)
    await drv._publish("e1", ep(1))
    old = drv._lease.id
    await store.revoke(old)  # what an expiry does: the lease and its keys are gone
    for n in (2, 3):
        drv._doc["endpoints"][f"e{n}"] = ep(n)
    await asyncio.gather(drv._publish("e2", ep(2)), drv._publish("e3", ep(3)))
    assert drv._lease.id != old and set(store._data.leases) == {drv._lease.id}, store._data.leases
    for n in (1, 2, 3):
        kv = await store.get(f"overlay/endpoints/{'ov' * 8}/e{n}")
        assert kv is not None and kv.lease == drv._lease.id, (n, kv)
    await drv.close()
