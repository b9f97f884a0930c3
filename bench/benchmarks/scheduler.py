"""The cluster scheduler: placements per second on 10,000 simulated nodes (issue 15, bench (a)).

**Subject** ``scheduler_place``: core's :class:`dockyard.scheduler.Scheduler` with the
filters and strategies of ``dockyard-cluster-scheduler`` loaded the way a manager loads them
(a kernel, ``Scheduler.from_kernel(kernel, "spread")``: every filter, the spread strategy,
overcommit 0.05) places ``BENCH_SCHED_PLACEMENTS`` containers (default 100,000) on
``BENCH_SCHED_NODES`` simulated nodes (default 10,000), one after another, each placement
followed by its state update (``reserve``: the node's reservations, container name, image and
host ports change before the next placement). In-process, no I/O: the store transaction and
the engine call are benchmarks (b), (c) and (d).

The nodes: 16 CPUs and 64 GiB each, labels ``zone`` (10 values), ``rack`` (100), ``storage``
(a third ``ssd``), engine fields (overlay, a kernel version), 1 % unhealthy. The requests,
from a fixed seed: 0.5/1/2 CPUs and 256 MiB/512 MiB/1 GiB, one of 20 images, and
- 40 % ``constraint:zone==zN``; 15 % ``storage==ssd`` and ``zone!=z0``; 10 %
  ``rack==/r1[0-9]/`` (a regexp); 10 % ``node==nNNNNN``; 5 % a soft ``zone==~z99`` (no such zone:
  tried, then dropped); 20 % no constraint;
- 5 % also want host port 8080/tcp; 5 % ``affinity:container==`` an earlier container (and no
  constraint).

**Peer**, in the same run: the same workload placed the way Swarm classic's scheduler does it
(``docker/swarm`` ``scheduler.go``: every filter over every node, then the strategy sorts every
survivor), i.e. ``Scheduler.place(request, limit=None)`` with the filters' index hints
dropped, on the first
``BENCH_SCHED_PEER_PLACEMENTS`` requests (default 200: it is ~100 x slower).

Timings are per placement (ms), the median of batches of 5,000. The goal (issue 15): at least
5,000 placements/s over the whole run, wall clock; the report also gives the rate per second of
this process's CPU time (the machine is shared: what other work took is not in that one). Reference, not measured here: Nomad's C1M placed about
3,750 containers/s (1,000,000 in under 5 minutes on 5 servers, 2016).
"""

from __future__ import annotations

import os
import random
import tempfile
import time

from harness import Context, Goal, Result, add_ratios, fill, sample_stats

SUBJECT = "scheduler_place"
PEER = "swarm_style_full_rank"
NODES = int(os.environ.get("BENCH_SCHED_NODES", "10000"))
PLACEMENTS = int(os.environ.get("BENCH_SCHED_PLACEMENTS", "100000"))
PEER_PLACEMENTS = int(os.environ.get("BENCH_SCHED_PEER_PLACEMENTS", "200"))
BATCH = 5000
GOAL_PER_S = 5000
NOMAD_C1M_PER_S = 3750
GIB = 1 << 30


def make_nodes(n: int, seed: int = 15) -> list:
    from dockyard.specs.cluster import Node

    rng = random.Random(seed)
    return [Node(f"n{i:05d}", f"tcp://10.{i // 250}.{i % 250}.1:2376", id=f"{rng.getrandbits(64):016x}",
                 labels={"zone": f"z{i % 10}", "rack": f"r{i % 100}", "storage": "ssd" if i % 3 == 0 else "hdd"},
                 cpus=16, memory=64 * GIB, healthy=rng.random() >= 0.01, storage_driver="overlay",
                 kernel_version="6.1.0-28-amd64", operating_system="Debian GNU/Linux 12 (bookworm)",
                 architecture="x86_64")
            for i in range(n)]


def make_requests(n: int, nodes: int, seed: int = 16) -> list:
    from dockyard.specs.cluster import PlacementRequest

    rng = random.Random(seed)
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.40:
            cons = [f"zone==z{rng.randrange(10)}"]
        elif r < 0.55:
            cons = ["storage==ssd", "zone!=z0"]
        elif r < 0.65:
            cons = ["rack==/r1[0-9]/"]
        elif r < 0.75:
            cons = [f"node==n{rng.randrange(nodes):05d}"]
        elif r < 0.80:
            cons = ["zone==~z99"]
        else:
            cons = []
        ports = [("", 8080, "tcp")] if rng.random() < 0.05 else []
        aff = [f"container==c{rng.randrange(i)}"] if i > 0 and rng.random() < 0.05 else []
        if aff:
            cons = []  # beside a container wherever it is (a constraint as well might exclude its node)
        out.append(PlacementRequest(f"c{i}", f"img{rng.randrange(20)}:latest", cpus=rng.choice((0.5, 1.0, 2.0)),
                                    memory=rng.choice((256, 512, 1024)) << 20, constraints=cons, affinities=aff,
                                    ports=ports))
    return out


def _scheduler(nodes: list, hints: bool = True):
    """A manager's scheduler (every installed filter, spread); without ``hints`` its filters'
    index hints are dropped, so that ``place(limit=None)`` checks every node, as Swarm did."""
    from dataclasses import replace

    from dockyard.config import Config
    from dockyard.kernel import Kernel
    from dockyard.scheduler import Scheduler

    with tempfile.TemporaryDirectory(prefix="bench-sched-") as tmp:
        kernel = Kernel.build(Config(values={"data-root": f"{tmp}/d", "exec-root": f"{tmp}/r"}), environ={})
        sched = Scheduler.from_kernel(kernel, "spread", nodes=nodes)
    if not hints:
        def unhinted(prepare):
            def prep(request):
                fc = prepare(request)
                return None if fc is None else replace(fc, index=())
            return prep
        sched.filters = [replace(f, prepare=unhinted(f.prepare)) for f in sched.filters]
    return sched


def place_all(sched, requests: list, limit: int | None = 1) -> tuple[list[float], int, float]:
    """Place and reserve each request; wall-clock seconds per batch of :data:`BATCH`, refusals,
    and the CPU seconds of the whole (this process's: what other work on the machine took is
    not in it)."""
    from dockyard.scheduler import NoNodeAvailable
    from dockyard.specs.cluster import NodeContainer

    batches, refused = [], 0
    clock = time.perf_counter
    cpu0 = time.process_time()
    for start in range(0, len(requests), BATCH):
        t0 = clock()
        for req in requests[start:start + BATCH]:
            try:
                node = sched.place(req, limit)[0]
            except NoNodeAvailable:
                refused += 1
                continue
            sched.reserve(node, NodeContainer(f"id-{req.name}", req.name, req.image, ports=tuple(req.ports),
                                              cpus=req.cpus, memory=req.memory))
        batches.append(clock() - t0)
    return batches, refused, time.process_time() - cpu0


def run(ctx: Context) -> list[Result]:
    subject = Result("scheduler", SUBJECT, f"Scheduler.place + reserve, {PLACEMENTS:,} on {NODES:,} nodes, spread")
    peer = Result("scheduler", PEER, f"filter every node + sort, {PEER_PLACEMENTS} on {NODES:,} nodes", role="peer")
    requests = make_requests(PLACEMENTS, NODES)
    ctx.log(f"scheduler: {NODES:,} nodes, {PLACEMENTS:,} placements")
    sched = _scheduler(make_nodes(NODES))
    load = os.getloadavg()[0]
    batches, refused, cpu = place_all(sched, requests)
    total = sum(batches)
    per = [b / BATCH for b in batches[:-1]] or [batches[-1] / len(requests)]
    fill(subject, sample_stats(per))
    subject.runs = len(requests)
    rate = len(requests) / total  # a refusal is a placement decision too (about 0.3 % of them)
    detail = (f"{rate:,.0f} placements/s over {len(requests):,} ({total:.1f} s wall clock, {refused} refused; "
              f"{len(requests) / cpu:,.0f}/s of this process's CPU time, load average {load:.1f} at the start); "
              f"{rate / NOMAD_C1M_PER_S:.2f}x Nomad C1M's ~{NOMAD_C1M_PER_S:,}/s (published, 5 servers)")
    subject.goals.append(Goal(f"≥ {GOAL_PER_S:,} placements/s with state updates, {NODES:,} nodes, constraints, "
                              "spread", rate >= GOAL_PER_S, detail))
    ctx.log(f"scheduler: {detail}")

    if PEER_PLACEMENTS:
        peer_sched = _scheduler(make_nodes(NODES), hints=False)
        pb, _, _ = place_all(peer_sched, requests[:PEER_PLACEMENTS], limit=None)
        fill(peer, sample_stats([sum(pb) / PEER_PLACEMENTS]))
        peer.runs = PEER_PLACEMENTS
        ctx.log(f"scheduler: full rank {PEER_PLACEMENTS / sum(pb):,.0f} placements/s")
    else:
        peer.error = "BENCH_SCHED_PEER_PLACEMENTS=0"
    out = [subject, peer]
    add_ratios(out)
    return out
