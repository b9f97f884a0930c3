"""netns test hosts: created and answering, one and five at once, against plain daemons.

**Subjects** (issue 14): ``netns_host`` -- one host made through the ``netns`` provision
driver, as any caller makes it (a kernel loads the driver from the registry;
``dockyard.provisioning.provision``: prepare, a server certificate of the SDK's ``TestCA`` for
the host's address, create), timed until ``create`` returns, i.e. until the host's engine
answers ``/_ping`` on its socket. ``netns_hosts_parallel`` -- five such hosts made at once
(``asyncio.gather``), until the last one answers.

**Floors**, in the same run: a plain ``python -m dockyard.daemon`` started on this machine with
its own roots and socket, timed until its socket answers ``/_ping`` (the same probe, same
back-off), and five of them started at once. A host is such a daemon plus a namespace, a veth
pair, a cgroup, TLS files and a TLS listener, so the ratio host/daemon is what the driver adds.

The four measurements run interleaved, round after round, the order rotating each round
(``BENCH_NETNS_ROUNDS`` rounds, default ``min(runs, 10)``, after one unrecorded round); every
host and daemon is removed between rounds (not timed), with the driver's ``remove`` and a
SIGTERM plus a purge of what the daemon owned. Hosts get a random free /24 of 10.247.0.0/16.

Goals (issue 14): one host create → engine ready ≤ 2 s; five in parallel ≤ 5 s.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import Context, Goal, Result, add_ratios, fill, sample_stats, stop_dockyardd

ONE = "netns_host"
FIVE = "netns_hosts_parallel"
PARALLEL = 5
MAX_ONE_S = 2.0
MAX_FIVE_S = 5.0
ROUNDS = int(os.environ.get("BENCH_NETNS_ROUNDS", "0"))


async def _ping(sock: Path) -> bool:
    """The driver's readiness probe: ``GET /_ping`` answered 200 on the unix socket."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(sock)), 2)
    except (OSError, TimeoutError):
        return False
    try:
        writer.write(b"GET /_ping HTTP/1.0\r\nHost: engine\r\n\r\n")
        return (await asyncio.wait_for(reader.readline(), 2)).split(b" ")[1:2] == [b"200"]
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


async def start_plain(python: Path, root: Path) -> subprocess.Popen[bytes]:
    """A plain dockyardd on ``root``, returned once it answers (same back-off as the driver)."""
    root.mkdir(parents=True)
    sock = root / "run" / "dockyard.sock"
    with open(root / "daemon.log", "wb") as log:
        proc = subprocess.Popen([str(python), "-m", "dockyard.daemon", "--data-root", str(root / "data"),
                                 "--exec-root", str(root / "run"), "-H", f"unix://{sock}"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    delay = 0.005
    while not (sock.exists() and await _ping(sock)):
        if proc.poll() is not None:
            raise RuntimeError(f"dockyardd exited {proc.returncode}: "
                               f"{(root / 'daemon.log').read_text(errors='replace')[-300:]}")
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 0.05)
    return proc


class Bench:
    """The kernel with the netns driver, and the plain daemons' scratch directory."""

    def __init__(self, ctx: Context, work: Path) -> None:
        self.ctx, self.work = ctx, work
        self.kernel = None
        self.driver = None
        self.ca = None
        self.n = 0

    async def open(self) -> None:
        from dockyard.config import Config
        from dockyard.kernel import Kernel
        from dockyard_plugin_sdk.conformance.network import free_test_subnet
        from dockyard_plugin_sdk.testing import TestCA

        subnet = await asyncio.to_thread(free_test_subnet, "10.247.0.0/16", 24)
        config = Config(values={"data-root": str(self.work / "k" / "d"), "exec-root": str(self.work / "k" / "r"),
                                "provision-opts": [f"subnet={subnet}"]})
        self.kernel = Kernel.build(config, autoload=False, environ={})
        self.driver = await self.kernel.driver_ready("provision", "netns")
        self.ca = TestCA()

    async def close(self) -> None:
        if self.kernel is not None:
            await self.kernel.stop()

    async def hosts(self, n: int) -> float:
        """Seconds to make ``n`` hosts at once, all answering; they are removed afterwards."""
        from dockyard import provisioning
        from dockyard.specs.provision import HostRequest

        names = [f"b{self.n + i}" for i in range(n)]
        self.n += n
        t0 = time.perf_counter()
        made = await asyncio.gather(*(provisioning.provision(
            self.kernel, self.driver, HostRequest(name=name), lambda h: self.ca.engine_tls(h.addresses))
            for name in names), return_exceptions=True)
        elapsed = time.perf_counter() - t0
        hosts = [h for h in made if not isinstance(h, BaseException)]
        await asyncio.gather(*(self.driver.remove(h) for h in hosts))
        errors = [e for e in made if isinstance(e, BaseException)]
        if errors:
            raise RuntimeError(f"netns host: {errors[0]}")
        return elapsed

    async def daemons(self, n: int) -> float:
        """Seconds to start ``n`` plain daemons at once, all answering; stopped afterwards."""
        roots = [self.work / f"p{self.n + i}" for i in range(n)]
        self.n += n
        t0 = time.perf_counter()
        made = await asyncio.gather(*(start_plain(self.ctx.python, r) for r in roots), return_exceptions=True)
        elapsed = time.perf_counter() - t0
        for proc, root in zip(made, roots, strict=True):
            if isinstance(proc, BaseException):
                shutil.rmtree(root, ignore_errors=True)
            else:
                await asyncio.to_thread(stop_dockyardd, proc, root)
        errors = [e for e in made if isinstance(e, BaseException)]
        if errors:
            raise RuntimeError(str(errors[0]))
        return elapsed


async def measure(ctx: Context, results: dict[str, Result], rounds: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="dyb-", dir="/tmp"))  # short: unix sockets live below
    bench = Bench(ctx, work)
    steps = {
        results["host"].name: lambda: bench.hosts(1),
        results["daemon"].name: lambda: bench.daemons(1),
        results["hosts"].name: lambda: bench.hosts(PARALLEL),
        results["daemons"].name: lambda: bench.daemons(PARALLEL),
    }
    samples: dict[str, list[float]] = {name: [] for name in steps}
    try:
        await bench.open()
        order = list(steps)
        for i in range(rounds + 1):  # the first round warms caches and is not recorded
            for name in order[i % len(order):] + order[:i % len(order)]:
                seconds = await steps[name]()
                if i:
                    samples[name].append(seconds)
            ctx.log(f"  round {i}/{rounds}: " + ", ".join(f"{n.split(' ')[0]} {s[-1] * 1000:.0f} ms"
                                                           for n, s in samples.items() if s))
    finally:
        await bench.close()
        shutil.rmtree(work, ignore_errors=True)
    for r in results.values():
        fill(r, sample_stats(samples[r.name]))


def run(ctx: Context) -> list[Result]:
    host = Result(benchmark=ONE, name="netns host create → engine answers",
                  command="provisioning.provision(kernel, netns, HostRequest(name)) until /_ping")
    daemon = Result(benchmark=ONE, name="dockyardd start → answers", role="peer",
                    command=f"{ctx.python} -m dockyard.daemon --data-root … -H unix://… until /_ping")
    hosts = Result(benchmark=FIVE, name=f"{PARALLEL} netns hosts at once → all answer",
                   command=f"asyncio.gather of {PARALLEL} provisioning.provision")
    daemons = Result(benchmark=FIVE, name=f"{PARALLEL} dockyardd at once → all answer", role="peer",
                     command=f"{PARALLEL} × {ctx.python} -m dockyard.daemon …, started together")
    results = {"host": host, "daemon": daemon, "hosts": hosts, "daemons": daemons}
    why = ""
    if os.geteuid() != 0:
        why = "netns hosts need root"
    else:
        probe = subprocess.run([str(ctx.python), "-c", "from dockyard_plugin_sdk.testing import "
                                "netns_hosts_unavailable as u; print(u() or '')"], capture_output=True, text=True)
        why = probe.stdout.strip() or (probe.stderr.strip().splitlines() or [""])[-1]
    if not why and Path(sys.executable).resolve() != ctx.python.resolve():
        why = f"run bench/run.py with {ctx.python}: the hosts are made in this process"
    if not why:
        try:
            asyncio.run(measure(ctx, results, ROUNDS or min(ctx.runs, 10)))
        except Exception as exc:  # noqa: BLE001 - reported as not measured, with the reason
            why = f"{type(exc).__name__}: {exc}"
    if why:
        for r in results.values():
            r.error = why
    out = list(results.values())
    add_ratios(out)
    for r, limit in ((host, MAX_ONE_S), (hosts, MAX_FIVE_S)):
        floor = daemon if r is host else daemons
        ratio = r.ratios.get(floor.name)
        detail = "" if r.median_ms is None else (
            f"{r.median_ms / 1000:.2f} s; the floor {floor.median_ms / 1000:.2f} s, {ratio:.2f}×"
            if ratio is not None else f"{r.median_ms / 1000:.2f} s")
        what = "one netns host create → engine ready" if r is host else f"{PARALLEL} netns hosts in parallel"
        r.goals.append(Goal(f"{what} ≤ {limit:g} s", None if r.median_ms is None else r.median_ms <= limit * 1000,
                            detail))
    return out
