"""The cluster view global-scope plugins share, on the SDK's in-memory cluster store (etcd's
contract in one process): two engines' views of the same keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from dockyard.errors import Conflict, Forbidden, InvalidArgument
from dockyard.model import IpamPool, Network, new_id
from dockyard_docker_plugins.cluster import ClusterView, NodeChange, advertise_address
from dockyard_plugin_sdk.testing.memstore import MemoryClusterStore


async def _next(changes: AsyncIterator[Any]) -> Any:
    return await asyncio.wait_for(changes.__anext__(), 5)


@pytest.fixture
async def views() -> AsyncIterator[tuple[ClusterView, ClusterView]]:
    store = await MemoryClusterStore.open()
    one, two = ClusterView(), ClusterView()
    await one.start(store, "10.9.0.1", 2)
    nodes = one.node_changes()
    await two.start(store.share(), "10.9.0.2", 2)
    assert await _next(nodes) == NodeChange("10.9.0.2", True)
    yield one, two
    await two.release()
    await one.release()
    await store.close()


def test_advertise_address_takes_an_address_or_an_interface() -> None:
    assert advertise_address("10.1.2.3:2376") == "10.1.2.3"
    assert advertise_address("[fd00::1]:2376") == "fd00::1"
    assert advertise_address("lo:2376") == "127.0.0.1"
    assert advertise_address("") == ""
    with pytest.raises(InvalidArgument, match="nosuchif0"):
        advertise_address("nosuchif0:2376")


async def test_a_network_endpoints_and_nodes_are_seen_by_every_engine(views: tuple[ClusterView, ClusterView]) -> None:
    one, two = views
    assert one.nodes() == ["10.9.0.2"] and two.nodes() == ["10.9.0.1"]  # never itself
    changes = two.changes()
    net = Network(id=new_id(), name="gnet", driver="gplug", ipam_pools=[IpamPool(subnet="10.77.0.0/24")],
                  extra={"pool_ids": ["GlobalDefault/10.77.0.0/24"], "private": 1})
    await one.publish_network(net)
    change = await _next(changes)
    assert change.kind == "network" and change.network is not None and change.network.id == net.id
    seen = two.definition(net.id)
    assert seen is not None and seen.scope == "global" and seen.driver == "gplug"
    assert seen.extra == {"pool_ids": ["GlobalDefault/10.77.0.0/24"]}  # only what every engine needs
    with pytest.raises(Conflict, match="gnet already exists in the cluster"):
        await two.publish_network(Network(id=new_id(), name="gnet", driver="gplug"))

    peers = one.changes()
    await two.publish_endpoint(net.id, "ep2", {"container_id": "c2", "name": "a2", "aliases": ["web"],
                                               "ipv4": "10.77.0.3/24", "ipv6": "", "mac": "02:42:0a:4d:00:03"})
    while (await _next(peers)).kind != "peers":
        pass
    (peer,) = one.peers(net.id)
    assert (peer.container_name, peer.host, peer.ipv4_address, peer.aliases) == ("a2", "10.9.0.2", "10.77.0.3/24",
                                                                                 ("web",))
    assert two.peers(net.id) == []  # its own endpoint is no peer
    with pytest.raises(Forbidden, match=r"active endpoints on other hosts \(10.9.0.2\)"):
        await one.remove_network(net)

    await two.unpublish_endpoint(net.id, "ep2")
    await one.remove_network(net)
    while True:
        change = await _next(changes)
        if change.kind == "network":
            break
    assert change.network is None and two.definition(net.id) is None
    await two.publish_network(Network(id=new_id(), name="gnet", driver="gplug"))  # the name is free again


async def test_a_released_view_withdraws_its_node_when_its_lease_ends(views: tuple[ClusterView, ClusterView]) -> None:
    one, two = views
    nodes = one.node_changes()
    await two.release()  # a clean stop leaves its records to the lease (2 s), as a killed engine
    assert await asyncio.wait_for(nodes.__anext__(), 10) == NodeChange("10.9.0.2", False)
    await two.start(one.store.share(), "10.9.0.2", 2)  # type: ignore[union-attr]  (the fixture releases it)
    assert await _next(nodes) == NodeChange("10.9.0.2", True)


async def test_the_catalog_lists_plugin_networks_and_refuses_to_make_any(tmp_path, views) -> None:  # noqa: ANN001
    from dockyard.specs import DriverContext
    from dockyard.specs.cluster import ClusterStore
    from dockyard.specs.network import ClusterNetworkChange, EndpointRequest
    from dockyard_docker_plugins.catalog import GlobalPluginNetworks

    one, _two = views
    store = one.store
    assert store is not None

    def catalog() -> GlobalPluginNetworks:
        return GlobalPluginNetworks(DriverContext(data_dir=tmp_path, run_dir=tmp_path, owner="dytest00",
                                                  daemon_config={"cluster-advertise": "10.9.0.1:2376"},
                                                  provided={ClusterView: one, ClusterStore: store}))

    net = Network(id=new_id(), name="gnet", driver="gplug")
    await one.publish_network(net)
    first = catalog()
    await first.setup()
    assert [n.id for n in await first.cluster_networks()] == [net.id]
    for call in (first.create_network(net), first.delete_network(net),
                 first.join(EndpointRequest(network=net, container_id="c", endpoint_id="e", netns_path="/x"))):
        with pytest.raises(InvalidArgument, match="docker network create -d PLUGIN"):
            await call
    await first.close()
    await one.remove_network(net)  # while no catalog runs (an engine that is down)
    second = catalog()
    await second.setup()
    assert await _next(second.cluster_changes()) == ClusterNetworkChange("network", net.id, None)
    await second.close()


async def test_a_write_meeting_an_expired_lease_renews_it_once(views) -> None:  # noqa: ANN001
    """The lease went (the store, or this engine, stood still longer than the TTL) before the
    keepalive noticed: the next endpoint's put takes a new lease, with this engine's other
    records put again on it (it failed with 'lease not found'); writes meeting the expiry
    together take one lease between them."""
    one, _two = views
    store = one.store
    assert store is not None
    net = new_id()
    await one.publish_endpoint(net, "e1", {"ipv4": "10.60.0.2/24"})
    old = one._lease.id
    await store.revoke(old)  # what an expiry does: the lease and its keys are gone
    await asyncio.gather(one.publish_endpoint(net, "e2", {"ipv4": "10.60.0.3/24"}),
                         one.publish_endpoint(net, "e3", {"ipv4": "10.60.0.4/24"}))
    assert one._lease.id != old and old not in store._data.leases
    assert [lease for lease in store._data.leases if lease != _two._lease.id] == [one._lease.id]
    for key in ("docker-plugins/nodes/10.9.0.1", *(f"docker-plugins/endpoints/{net}/e{n}" for n in (1, 2, 3))):
        kv = await store.get(key)
        assert kv is not None and kv.lease == one._lease.id, (key, kv)
