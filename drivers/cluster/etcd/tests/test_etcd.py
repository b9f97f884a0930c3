"""What only the etcd store does: several members, etcd restarts, the URL's prefix, compaction,
and the kernel handing it out."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import aetcd
import pytest

from dockyard.config import Config
from dockyard.errors import InvalidArgument, StoreCompacted, StoreUnavailable
from dockyard.kernel import Kernel
from dockyard.specs import DriverContext
from dockyard.specs.cluster import ClusterStore, Compare, Put
from dockyard_cluster_etcd.driver import EtcdStore


async def open_store(tmp_path: Path, url: str, **options: str) -> EtcdStore:
    store = EtcdStore(DriverContext(data_dir=tmp_path, run_dir=tmp_path, owner="dytest0",
                                    options=options, daemon_config={"cluster-store": url}))
    await store.setup()
    return store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_three_members_lose_one_and_nothing_is_lost(etcd_cluster, tmp_path: Path) -> None:
    url = etcd_cluster.url("swarm")
    store = await open_store(tmp_path, url)
    # two managers, each first talking to a different member, racing for names
    rival = await open_store(tmp_path, etcd_cluster.url("swarm", etcd_cluster.members[1:] + etcd_cluster.members[:1]))
    try:
        for i in range(20):
            rev = await store.put(f"containers/c{i}", b"%d" % i)
        watch = store.watch("containers/", rev + 1)
        etcd_cluster.kill(etcd_cluster.members[0])  # the member `store` talks to
        for i in range(20, 40):  # writes go on through the other two
            await store.put(f"containers/c{i}", b"%d" % i)
        # the watch moves to another member and misses nothing
        seen = [(await asyncio.wait_for(watch.__anext__(), 10)).key for _ in range(20)]
        assert seen == [f"containers/c{i}" for i in range(20, 40)]
        await watch.aclose()
        results = await asyncio.gather(*(s.txn([Compare.absent("names/web")], [Put("names/web", b"%d" % i)])
                                         for i, s in enumerate([store, rival] * 3)))
        assert sum(r.succeeded for r in results) == 1, "two managers both created one name"
        for s in (store, rival):
            listing = await s.list("containers/")
            assert sorted(int(kv.value) for kv in listing) == list(range(40)), "a write was lost"
        # the lost member comes back and catches up: read from it alone
        etcd_cluster.start(etcd_cluster.members[0])
        etcd_cluster.wait_healthy([etcd_cluster.members[0]])
        alone = await open_store(tmp_path, etcd_cluster.url("swarm", etcd_cluster.members[:1]))
        try:
            assert len(await alone.list("containers/")) == 40
        finally:
            await alone.close()
    finally:
        await store.close()
        await rival.close()


async def test_etcd_restarted_under_a_client_reconnects_with_state_intact(etcd, tmp_path: Path) -> None:
    store = await open_store(tmp_path, etcd.url("p"))
    try:
        lease = await store.grant(60)
        await store.put("nodes/n1", b"up", lease)
        rev = await store.put("containers/a", b"1")
        watch = store.watch("containers/", rev + 1)
        await store.put("containers/b", b"2")
        assert (await asyncio.wait_for(watch.__anext__(), 5)).key == "containers/b"
        etcd.restart(etcd.members[0])
        started = time.monotonic()
        await store.put("containers/c", b"3")  # waits for the member to answer again
        reconnect = time.monotonic() - started
        assert reconnect < 5, f"reconnect took {reconnect:.1f}s"
        ev = await asyncio.wait_for(watch.__anext__(), 5)
        assert (ev.key, ev.kv.value) == ("containers/c", b"3"), "the watch lost or repeated a change"
        await watch.aclose()
        assert [kv.key for kv in await store.list("containers/")] == ["containers/a", "containers/b", "containers/c"]
        assert await store.keepalive(lease) > 0, "the lease did not survive the restart"
        assert (await store.get("nodes/n1")).value == b"up"  # type: ignore[union-attr]
    finally:
        await store.close()


async def test_a_watch_waits_out_a_short_outage(etcd, tmp_path: Path) -> None:
    store = await open_store(tmp_path, etcd.url("p"))
    writer = await open_store(tmp_path, etcd.url("p"))
    try:
        rev = await store.put("k/0", b"0")
        watch = store.watch("k/", rev + 1)
        first = asyncio.ensure_future(watch.__anext__())
        etcd.kill(etcd.members[0])
        await asyncio.sleep(0.3)  # the outage itself is what is tested
        etcd.start(etcd.members[0])
        await writer.put("k/1", b"1")
        ev = await asyncio.wait_for(first, 5)
        assert ev.key == "k/1"
        await watch.aclose()
    finally:
        await store.close()
        await writer.close()


async def test_unreachable_store_is_a_clear_error_at_setup(tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match=f"127.0.0.1:{port}"):
        await open_store(tmp_path, f"etcd://127.0.0.1:{port}/p", timeout="1", **{"connect-timeout": "0.3"})
    assert time.monotonic() - started < 3


async def test_tls_with_a_client_certificate(etcd_factory, tmp_path: Path) -> None:
    cluster = etcd_factory(tls=True)
    assert cluster.members[0].client_url.startswith("https://")
    store = await open_store(tmp_path, cluster.url("p"), **cluster.store_options)
    try:
        rev = await store.put("k", b"v")
        watch = store.watch("", rev)
        assert (await asyncio.wait_for(watch.__anext__(), 5)).kv.value == b"v"
        await watch.aclose()
    finally:
        await store.close()
    quick = {"timeout": "1", "connect-timeout": "0.3"}
    # no client certificate, or no TLS at all: refused, a clear error at setup
    with pytest.raises(StoreUnavailable):
        await open_store(tmp_path, cluster.url("p"), **quick, **{"kv.cacertfile": cluster.store_options["kv.cacertfile"]})
    with pytest.raises(StoreUnavailable):
        await open_store(tmp_path, cluster.url("p"), **quick)


@pytest.mark.parametrize("options", [{"kv.certfile": "c.pem", "kv.keyfile": "k.pem"},
                                     {"kv.cacertfile": "/nonexistent/ca.pem"},
                                     {"kv.cacertfile": __file__, "kv.certfile": __file__}])
async def test_incomplete_tls_options_are_refused(tmp_path: Path, options: dict[str, str]) -> None:
    with pytest.raises(InvalidArgument, match="cluster-opts"):
        await open_store(tmp_path, "etcd://127.0.0.1:2379/p", **options)


async def test_an_etcd_url_is_required(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        await open_store(tmp_path, "consul://127.0.0.1:8500/p")


async def test_the_prefix_keeps_clusters_apart(module_etcd, tmp_path: Path) -> None:
    a = await open_store(tmp_path, module_etcd.url("one/swarm"))
    b = await open_store(tmp_path, module_etcd.url("one/swarm2"))
    try:
        await a.put("nodes/n1", b"a")
        await b.put("nodes/n1", b"b")
        assert [(kv.key, kv.value) for kv in await a.list("")] == [("nodes/n1", b"a")]
        assert (await b.get("nodes/n1")).value == b"b"  # type: ignore[union-attr]
        assert await a.delete("", prefix=True) == 1
        assert await b.get("nodes/n1") is not None
    finally:
        await a.close()
        await b.close()


async def test_a_watch_from_compacted_history_says_so(module_etcd, tmp_path: Path) -> None:
    store = await open_store(tmp_path, module_etcd.url())
    try:
        old = await store.put("k", b"1")
        now = await store.put("k", b"2")
        host, port = module_etcd.members[0].endpoint.rsplit(":", 1)
        async with aetcd.Client(host, int(port)) as raw:
            await raw.compact(now)
        with pytest.raises(StoreCompacted):
            await asyncio.wait_for(store.watch("", old).__anext__(), 5)
    finally:
        await store.close()


async def test_the_kernel_selects_connects_and_provides_it(module_etcd, tmp_path: Path) -> None:
    config = Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run"),
                            "cluster-store": module_etcd.url("k")})
    kernel = Kernel.build(config, autoload=False)
    try:
        store = await kernel.cluster_store()
        assert isinstance(store, EtcdStore) and store is await kernel.cluster_store()
        await store.put("x", b"1")
        # what a driver of another area gets: the same connected store
        assert kernel.provided()[ClusterStore] is store
    finally:
        await kernel.stop()


async def test_a_kernel_with_an_unreachable_store_does_not_start(tmp_path: Path) -> None:
    config = Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run"),
                            "cluster-store": f"etcd://127.0.0.1:{free_port()}/p",
                            "cluster-opts": ["timeout=1", "connect-timeout=0.3"]})
    kernel = Kernel.build(config, autoload=False)
    try:
        with pytest.raises(StoreUnavailable):
            await kernel.start()
    finally:
        await kernel.stop()


async def test_a_close_never_waits_for_good_and_a_closed_store_opens_nothing(module_etcd, tmp_path: Path) -> None:
    """Closing is bounded (aetcd's close waits on its watcher's lock and request queue: when
    that does not end, the channel is closed directly), a watch's cancel on the way out too,
    and a call after the close (a task that outlived its service) fails at once instead of
    opening a channel nobody would close; set up again, the store works."""
    store = await open_store(tmp_path, module_etcd.url("close"), timeout="0.5")
    rev = await store.put("k/a", b"1")
    watch = store.watch("k/", rev + 1)
    await store.put("k/b", b"2")
    assert (await asyncio.wait_for(watch.__anext__(), 5)).key == "k/b"
    client = store._members[0].client
    assert client is not None
    channel_closed = asyncio.Event()
    real_channel_close = client.channel.close

    async def stuck_close() -> None:
        await asyncio.Event().wait()

    async def channel_close(*args: object) -> None:
        channel_closed.set()
        await real_channel_close(*args)

    client.close = stuck_close  # type: ignore[method-assign]
    client.channel.close = channel_close  # type: ignore[method-assign]
    started = time.monotonic()
    await asyncio.wait_for(store.close(), 10)
    assert time.monotonic() - started < 5 and channel_closed.is_set()
    await asyncio.wait_for(watch.aclose(), 5)
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.get("k/a")
    assert store._members[0].client is None  # nothing opened again
    await store.setup()
    try:
        assert (await store.get("k/a")).value == b"1"
    finally:
        await store.close()


async def test_a_watch_ends_with_an_error_when_the_store_closes(module_etcd, tmp_path: Path) -> None:
    """Closed under a watch, the store raises StoreUnavailable: a quiet end made the swarm
    manager's ``while True: async for ev in store.watch(...)`` loops call watch again and again
    without ever yielding to the event loop, which hung for good (a test's teardown, 300 s)."""
    store = await open_store(tmp_path, module_etcd.url("closing"))
    rev = await store.put("k/a", b"1")
    rounds = 0

    async def follow() -> None:  # the managers' way: watch again after an end, pause after an error
        nonlocal rounds
        while True:
            rounds += 1
            try:
                async for _ev in store.watch("k/", rev + 1):
                    pass
            except StoreUnavailable:
                await asyncio.sleep(0.05)

    task = asyncio.create_task(follow())
    await store.put("k/b", b"2")
    await asyncio.sleep(0.2)
    await store.close()
    await asyncio.sleep(0.3)  # returns only if the loop is not spinning
    assert not task.done() and rounds < 50
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    with pytest.raises(StoreUnavailable, match="closed"):
        async for _ev in store.watch("k/", rev + 1):
            pass
