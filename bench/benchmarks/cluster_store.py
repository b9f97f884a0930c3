"""Placements per second with real etcd transactions (issue 15, bench (d)).

**Subjects**: ``etcd_placements`` (one etcd member) and ``etcd_placements_3`` (a 3-member
cluster, every write committed by a quorum) -- Debian's etcd-server 3.4 started by the SDK's
``start_etcd`` on loopback ports under ``/tmp`` (so on tmpfs where /tmp is one), reached through
``dockyard-cluster-etcd`` as a manager reaches it (a kernel loads the driver from the
``cluster-store`` URL). ``BENCH_ETCD_MANAGERS`` managers (default 2: separate stores, separate
gRPC channels) each run ``BENCH_ETCD_CONCURRENCY`` placers at once (default 8), placing
``BENCH_ETCD_PLACEMENTS`` containers (default 2,000) on ``BENCH_ETCD_NODES`` nodes (default 50).
A placement is the swarm's placement transaction (``SWARM.md``'s key layout), one etcd txn:

- compare ``reservations/<node>`` unchanged since it was read (its mod revision: CAS) and
  ``names/<name>`` absent (create-if-absent);
- then put the node's new reservation (+0.1 CPU, +64 MiB), ``names/<name>`` and
  ``containers/<id>`` (the container's record, ~300 bytes of JSON).

Each manager caches the reservations with their mod revisions, kept fresh by a watch of
``reservations/`` and by its own transactions (nothing is read before a placement). A placer that loses the
race (another manager, or another placer, changed the node's reservation first) gets the
current reservation from the transaction's failure branch (``Get``) and retries at once, so a
placement is one round trip when nobody raced it: every retry is counted, and every placement is checked at the
end (the node's reservation equals the placements on it: no update lost; no name placed twice).
The placers pick nodes as spread would with stale views: the node with the fewest placements
in their manager's own count (ties broken at random), so managers collide now and then as
real ones do.

Timings: per placement (ms), latency of the successful transaction including the retries it
needed; the throughput is placements / wall time of the whole run. **Peer**, same run, same
store: ``etcd_put`` -- one plain put of the same record (no compare), one at a time: what a
round trip with an fsync costs, the floor of any transaction.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from harness import Context, Goal, Result, add_ratios, fill, sample_stats

PLACEMENTS = int(os.environ.get("BENCH_ETCD_PLACEMENTS", "2000"))
NODES = int(os.environ.get("BENCH_ETCD_NODES", "50"))
MANAGERS = int(os.environ.get("BENCH_ETCD_MANAGERS", "2"))
CONCURRENCY = int(os.environ.get("BENCH_ETCD_CONCURRENCY", "8"))
PUTS = 300


async def _open(root: Path, url: str):  # -> ClusterStore, through a kernel as a manager gets it
    from dockyard.config import Config
    from dockyard.kernel import Kernel

    root.mkdir(parents=True, exist_ok=True)
    kernel = Kernel.build(Config(values={"data-root": str(root / "data"), "exec-root": str(root / "run"),
                                         "cluster-store": url}), autoload=False)
    return kernel, await kernel.cluster_store()


async def _placements(root: Path, url: str) -> tuple[list[float], float, int]:
    """(per-placement seconds, wall seconds, retries) of PLACEMENTS placements."""
    from dockyard.specs.cluster import Compare, Get, Put

    opened = [await _open(root / f"m{i}", url) for i in range(MANAGERS)]
    stores = [s for _k, s in opened]
    try:
        for n in range(NODES):
            await stores[0].put(f"reservations/n{n}", json.dumps({"cpus": 0.0, "memory": 0}).encode())
        counter = iter(range(PLACEMENTS))
        latencies: list[float] = []
        retries = 0
        views = [[0] * NODES for _ in stores]  # each manager's own (stale) count per node
        # each manager's cache of the reservations: (value, mod revision), refreshed by its own
        # transactions (success: the txn's revision; failure: the failure branch reads it)
        first = {kv.key: (json.loads(kv.value), kv.mod_revision) for kv in await stores[0].list("reservations/")}
        caches = [dict(first) for _ in stores]
        start_rev = max(rev for _v, rev in first.values()) + 1

        async def follow(m: int) -> None:  # a manager's view, kept fresh by a watch
            cache = caches[m]
            async for ev in stores[m].watch("reservations/", start_rev):
                if ev.type == "put" and ev.kv.mod_revision > cache[ev.key][1]:
                    cache[ev.key] = (json.loads(ev.kv.value), ev.kv.mod_revision)

        watchers = [asyncio.ensure_future(follow(m)) for m in range(MANAGERS)]

        async def placer(m: int) -> None:
            nonlocal retries
            store, view, cache = stores[m], views[m], caches[m]
            rng = random.Random(m * 1000 + id(asyncio.current_task()) % 1000)
            for i in counter:
                node = min(range(NODES), key=lambda n: (view[n], rng.random()))  # ties: random, as spread's
                view[node] += 1
                key, name, cid = f"reservations/n{node}", f"web-{i}", f"{i:064x}"
                record = json.dumps({"id": cid, "node": f"n{node}", "name": name, "reschedule": False,
                                     "config": {"Image": "busybox", "Cmd": ["sleep", "1d"], "Env": [],
                                                "HostConfig": {"NanoCpus": 100_000_000, "Memory": 64 << 20}},
                                     "created": time.time()}).encode()
                started = time.perf_counter()
                while True:
                    res, rev = cache[key]
                    new = {"cpus": round(res["cpus"] + 0.1, 1), "memory": res["memory"] + (64 << 20)}
                    done = await store.txn(
                        [Compare.unchanged(key, rev), Compare.absent(f"names/{name}")],
                        [Put(key, json.dumps(new).encode()), Put(f"names/{name}", cid.encode()),
                         Put(f"containers/{cid}", record)],
                        [Get(key), Get(f"names/{name}")])
                    if done.succeeded:
                        if done.revision > cache[key][1]:
                            cache[key] = (new, done.revision)
                        break
                    assert not done.results[1], f"name {name} placed twice"
                    current = done.results[0][0]
                    if current.mod_revision > cache[key][1]:
                        cache[key] = (json.loads(current.value), current.mod_revision)
                    retries += 1
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(placer(m) for m in range(MANAGERS) for _ in range(CONCURRENCY)))
        wall = time.perf_counter() - began
        for w in watchers:
            w.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        # nothing lost, nothing doubled
        names = await stores[0].list("names/")
        assert len(names) == PLACEMENTS, f"{len(names)} names for {PLACEMENTS} placements"
        per_node: dict[str, int] = {}
        for kv in await stores[0].list("containers/"):
            per_node[json.loads(kv.value)["node"]] = per_node.get(json.loads(kv.value)["node"], 0) + 1
        for kv in await stores[0].list("reservations/"):
            want = per_node.get(kv.key.rsplit("/", 1)[1], 0) * (64 << 20)
            assert json.loads(kv.value)["memory"] == want, f"{kv.key}: a reservation update was lost"
        return latencies, wall, retries
    finally:
        for kernel, _s in opened:
            await kernel.stop()


async def _puts(root: Path, url: str) -> list[float]:
    kernel, store = await _open(root / "peer", url)
    try:
        record = b'{"id": "x", "node": "n1", "name": "web", "config": {"Image": "busybox"}}' * 4
        out = []
        for i in range(PUTS):
            started = time.perf_counter()
            await store.put(f"peer/{i}", record)
            out.append(time.perf_counter() - started)
        return out
    finally:
        await kernel.stop()


def run(ctx: Context) -> list[Result]:
    from dockyard_plugin_sdk.testing.etcd import etcd_unavailable, start_etcd

    cmd = (f"{PLACEMENTS} placements ({MANAGERS} managers x {CONCURRENCY} placers, {NODES} nodes): one etcd txn "
           "each, CAS reservations/<node> + create-if-absent names/<name> + put containers/<id>")
    results: list[Result] = []
    reason = etcd_unavailable()
    subjects = [("etcd_placements", 1), ("etcd_placements_3", 3)]
    if reason:
        return [Result("cluster_store", n, cmd, error=reason) for n, _m in subjects] + \
            [Result("cluster_store", "etcd_put", "put", role="peer", error=reason)]
    root = Path(tempfile.mkdtemp(prefix="dybench-etcd-", dir=str(ctx.work_dir)))
    try:
        for name, members in subjects:
            result = Result("cluster_store", name, f"{cmd}; etcd members: {members}")
            try:
                with start_etcd(root / name, members=members) as cluster:
                    latencies, wall, retries = asyncio.run(_placements(root / name / "client", cluster.url("bench")))
                    if members == 1:
                        peer = fill(Result("cluster_store", "etcd_put", f"{PUTS} plain puts, one at a time, "
                                           "same store", role="peer"), sample_stats(asyncio.run(
                                               _puts(root / name / "client", cluster.url("bench")))))
                        results.append(peer)
                fill(result, sample_stats(latencies))
                rate = PLACEMENTS / wall
                p99 = sorted(latencies)[int(len(latencies) * 0.99) - 1] * 1000
                result.goals.append(Goal(
                    f"placements/s with real etcd transactions (reported): {rate:,.0f}/s", None,
                    f"{PLACEMENTS} in {wall:.2f} s; {retries} CAS retries "
                    f"({retries / PLACEMENTS:.2f} per placement); per placement median "
                    f"{statistics.median(latencies) * 1000:.1f} ms, p99 {p99:.1f} ms; "
                    "checked: no name twice, no reservation update lost"))
                ctx.log(f"  {name}: {rate:,.0f} placements/s, {retries} retries, p99 {p99:.1f} ms")
            except Exception as exc:  # noqa: BLE001 - reported as not measured
                result.error = f"{type(exc).__name__}: {exc}"
            results.append(result)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    add_ratios(results)
    return results
