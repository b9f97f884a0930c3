"""``docker info`` through a swarm manager over 1,000 SIMULATED engines (issue 15).

A manager (``dockyardd --role manager --cluster-store etcd://...``, a real etcd from the SDK's
``start_etcd``) over ``BENCH_SWARM_NODES`` (default 1,000) FAKE Docker engines: one child
process of ``dockyard_swarm.engines_fake`` answering on loopback ports (running nothing); their
node records written to etcd as the heartbeat writes them. After the manager answers, it is left
``BENCH_SWARM_INFO_SETTLE`` seconds (default 15: its per-node views and event streams opened),
then ``GET /v1.41/info`` is timed ``BENCH_SWARM_INFO_RUNS`` times (default 50), one after
another, on a keep-alive unix-socket client: Swarm classic's answer with a block per node (about
10 pairs each). **Reference** (not measured here): Swarm classic, 1 manager, 1,000 nodes,
Consul, Nov 2015: ``docker info`` p50/p90/p99 150/200/360 ms. Goal: p99 below Swarm's 360 ms.
Also reported: how long the manager takes to answer its socket over 1,000 nodes.

Measured 2026-12-07 on the 2-core CI machine while seven other sessions worked on it, two runs:
p50/p90/p99 27.4/91.6/139.2 ms and 53.7/182.3/372.2 ms (the manager answering its socket after
8.4 and 7.3 s); once the views' first fetch stopped holding the start past 2 s: 24.2/70.9/144.0
ms, answering after 3.5 s (the four views fetched 1,000 nodes in 1.5, 0.4, 0.5 and 0.3 s). Of a call, the system service's ``info`` takes about 18 ms for 1,000 nodes and
the JSON of its ~10,000 pairs about 5 ms (profiled in-process); the tail is the machine's load.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import Context, Goal, Result, fill, sample_stats

NAME = "swarm_info_fake1000"
NODES = int(os.environ.get("BENCH_SWARM_NODES", "1000"))
RUNS = int(os.environ.get("BENCH_SWARM_INFO_RUNS", "50"))
SETTLE = float(os.environ.get("BENCH_SWARM_INFO_SETTLE", "15"))
SWARM_2015 = (150.0, 200.0, 360.0)


def _sibling(stem: str) -> Any:
    """Another benchmark module of this directory (bench/run.py loads them by path)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"bench_{stem}", Path(__file__).with_name(f"{stem}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


async def measure(ctx: Context, work: Path, result: Result) -> tuple[str, float]:
    import aiohttp

    from dockyard_plugin_sdk.testing import start_etcd

    sw = _sibling("swarm_run")  # its fake engines, node records (as its (b) writes them), manager

    etcd = await asyncio.to_thread(start_etcd, work / "etcd", 1)
    fakes = manager = None
    try:
        fakes, engines = await sw.start_fakes(ctx, work, NODES)
        url = etcd.url("benchinfo")
        await sw.register(url, engines)
        started = time.perf_counter()
        manager, sock = await asyncio.to_thread(sw.start_manager, ctx, work / "manager", url, None, 120)
        answered = time.perf_counter() - started
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as s:
            async def info() -> tuple[float, dict[str, Any]]:
                t0 = time.perf_counter()
                async with s.get("http://manager/v1.41/info") as r:
                    doc = await r.json()
                return time.perf_counter() - t0, doc

            _, doc = await info()
            await asyncio.sleep(SETTLE)
            samples = [(await info())[0] for _ in range(RUNS)]
        nodes = dict(map(tuple, doc.get("SystemStatus") or [])).get("Nodes")
        if nodes != str(NODES):
            raise RuntimeError(f"/info shows {nodes} nodes, not {NODES}")
        fill(result, sample_stats(samples))
        return sw.percentiles(samples), answered
    finally:
        if manager is not None:
            sw.stop(manager)
        if fakes is not None:
            sw.stop(fakes, 5)
        etcd.close()


def run(ctx: Context) -> list[Result]:
    result = Result(benchmark=NAME, name=f"docker info via manager → {NODES} fake engines",
                    command="GET /v1.41/info → dockyardd --role manager (unix socket)")
    text = ""
    work = Path(tempfile.mkdtemp(prefix="dybi", dir="/tmp"))
    try:
        text, answered = asyncio.run(measure(ctx, work, result))
        text += f"; the manager answered {answered:.1f} s after it was started"
    except Exception as exc:  # noqa: BLE001 - reported as not measured
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    p99 = float(text.split()[1].split("/")[2]) if text else None
    result.goals.append(Goal(f"p99 below Swarm classic's {SWARM_2015[2]:g} ms (2015: p50/p90/p99 "
                             f"{'/'.join(f'{x:g}' for x in SWARM_2015)} ms)",
                             None if p99 is None else p99 < SWARM_2015[2], text))
    return [result]


if __name__ == "__main__":  # one benchmark alone: python bench/benchmarks/swarm_info.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    for r in run(Context()):
        print(r.name, r.median_ms, r.error, [(g.text, g.met, g.detail) for g in r.goals])
