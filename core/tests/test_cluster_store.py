"""The cluster-store seam: the URL, the kernel choosing the driver by its scheme, connecting it
at start and handing one instance out (``kernel.cluster_store()``, ``context.need``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.config import Config
from dockyard.errors import DriverNotInstalled, InvalidArgument, TxnFailed
from dockyard.kernel import Kernel
from dockyard.specs.cluster import ClusterStore, KeyValue, StoreURL, TxnResult

FAKE_STORE = """
from dockyard.specs import DriverInfo
from dockyard_plugin_sdk.testing.memstore import MemoryClusterStore

SETUPS = []


class FakeStore(MemoryClusterStore):
    info = DriverInfo(name="fake", kind="cluster")

    async def setup(self):
        SETUPS.append(self.url)
"""


@pytest.mark.parametrize(("url", "endpoints", "prefix"), [
    ("etcd://10.0.0.1:2379/swarm", (("10.0.0.1", 2379),), "swarm"),
    ("etcd://h1:1,h2:2,h3:3/a/b/", (("h1", 1), ("h2", 2), ("h3", 3)), "a/b"),
    ("etcd://h1,h2:2380", (("h1", 2379), ("h2", 2380)), ""),
    ("ETCD://[::1]:2379/p", (("::1", 2379),), "p"),
])
def test_a_store_url_names_endpoints_and_a_prefix(url: str, endpoints: tuple, prefix: str) -> None:
    parsed = StoreURL.parse(url)
    assert (parsed.scheme, parsed.endpoints, parsed.prefix) == ("etcd", endpoints, prefix)
    assert StoreURL.parse(str(parsed)) == parsed


@pytest.mark.parametrize("url", ["", "etcd", "10.0.0.1:2379/p", "etcd://h:0/p", "etcd://h:port/p",
                                 "etcd://h:1,,h:2/p", "et cd://h:1/p"])
def test_a_malformed_store_url_is_refused(url: str) -> None:
    with pytest.raises(InvalidArgument, match="cluster store"):
        StoreURL.parse(url)


def kernel(tmp_path: Path, url: str = "", **values: object) -> Kernel:
    cfg = Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run"),
                         **({"cluster-store": url} if url else {}), **values})
    return Kernel.build(cfg, autoload=False, environ={})


async def test_no_store_configured_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no cluster store is configured"):
        await kernel(tmp_path).cluster_store()


async def test_an_unknown_scheme_names_the_distribution_to_install(tmp_path: Path) -> None:
    k = kernel(tmp_path, "zk://10.0.0.1:2181/swarm")
    assert k.selected_driver_name("cluster") == "zk"
    with pytest.raises(DriverNotInstalled, match="pip install dockyard-cluster-zk"):
        await k.start()
    await k.stop()


async def test_the_configured_store_is_connected_at_start_and_handed_out_once(tmp_path: Path, make_dist) -> None:
    make_dist("dockyard-cluster-fake", {"dockyard.drivers.cluster": {"fake": "fake_store:FakeStore"}},
              {"fake_store": FAKE_STORE})
    import fake_store

    k = kernel(tmp_path, "fake://h1:1,h2:2/swarm")
    await k.start()
    try:
        assert fake_store.SETUPS == [StoreURL("fake", (("h1", 1), ("h2", 2)), "swarm")]
        store = await k.cluster_store()
        assert isinstance(store, ClusterStore) and type(store).__name__ == "FakeStore"
        assert await k.cluster_store() is store and len(fake_store.SETUPS) == 1
        # a driver of another area gets the same instance through its context
        ctx_store = k.provided()[ClusterStore]
        assert ctx_store is store
        await store.put("k", b"v")
        assert (await ctx_store.get("k")).value == b"v"  # type: ignore[union-attr]
    finally:
        await k.stop()


def test_a_failed_transaction_raises_when_asked_and_values_read_as_json() -> None:
    with pytest.raises(TxnFailed, match="name web"):
        TxnResult(False, 7).check("name web")
    assert TxnResult(True, 7).check().revision == 7
    assert KeyValue("nodes/n1", b'{"addr": "10.0.0.2:2376"}', 3).json() == {"addr": "10.0.0.2:2376"}


def test_discovery_ttl_of_the_cluster_options() -> None:
    from dockyard.specs.cluster import discovery_ttl

    assert discovery_ttl({}, "10") == "10"
    assert discovery_ttl({"cluster-opts": ["discovery.heartbeat=1", "discovery.ttl=2.5"]}, "10") == "3"
    assert discovery_ttl({"cluster-opts": ["discovery.ttl=0.2"]}, "10") == "1"
    assert discovery_ttl({"cluster-opts": ["discovery.ttl=soon"]}, "10") == "10"
