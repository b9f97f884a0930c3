"""ssh hosts: ``-d ssh`` provisioning of a fresh target, against starting a plain dockyardd.

**Subjects** (issue 14): ``ssh_host`` -- one host made through the ``ssh`` provision driver as
any caller makes it (a kernel loads the driver from the registry, its installer comes from the
distribution's ``dockyard_provides``; ``dockyard.provisioning.provision``: prepare, a server
certificate of the SDK's ``TestCA``, create), timed until ``create`` returns: the wheelhouse,
the SSH connection, the uploads, the offline venv, the configuration, the engine answering on
its socket and its TLS listener checked from here. Two cases: ``fresh`` (an empty wheelhouse
cache: the wheelhouse is made first) and ``cached`` (the wheelhouse of the previous round);
each provisions a *fresh target* (a new install root on the target: everything is uploaded and
installed), and the host is removed (uninstalled) between rounds, untimed.

**Floor**, in the same run: a plain ``python -m dockyard.daemon`` on this machine with its own
roots and socket, timed until its socket answers ``/_ping`` (the netns benchmark's floor).

The target is Debian's real sshd in a network namespace (``dockyard_provision_ssh.testing``),
made once for the run. The three measurements run interleaved, the order rotating each round
(``BENCH_SSH_ROUNDS``, default ``min(runs, 5)``, after one unrecorded round).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from harness import Context, Result, add_ratios, fill, sample_stats, stop_dockyardd

BENCH = "ssh_host"
ROUNDS = int(os.environ.get("BENCH_SSH_ROUNDS", "0"))


class Bench:
    def __init__(self, ctx: Context, work: Path) -> None:
        self.ctx, self.work = ctx, work
        self.n = 0
        self.target = None
        self.kernel = None
        self.driver = None

    async def open(self) -> None:
        from dockyard.config import Config
        from dockyard.kernel import Kernel
        from dockyard_plugin_sdk.conformance.network import free_test_subnet
        from dockyard_provision_ssh.testing import SUBNET_BASE, make_target

        subnet = await asyncio.to_thread(free_test_subnet, SUBNET_BASE, 24)
        self.target = await asyncio.to_thread(make_target, "dyb" + os.urandom(3).hex()[:5], 0, subnet)
        config = Config(values={"data-root": str(self.work / "k" / "d"), "exec-root": str(self.work / "k" / "r"),
                                "plugins": {"allow": ["ssh"]}})
        self.kernel = Kernel.build(config, environ={})
        self.driver = await self.kernel.driver_ready("provision", "ssh")

    async def close(self) -> None:
        from dockyard_provision_ssh.testing import remove_target

        if self.kernel is not None:
            await self.kernel.stop()
        if self.target is not None:
            left = await asyncio.to_thread(remove_target, self.target)
            if left:
                raise RuntimeError(f"processes were left on the target: {left}")

    async def host(self, fresh_wheelhouse: bool) -> float:
        from dockyard import provisioning
        from dockyard.specs.provision import HostRequest
        from dockyard_plugin_sdk.testing import TestCA

        cache = self.driver.installer.cache_dir
        if fresh_wheelhouse:
            shutil.rmtree(cache, ignore_errors=True)
        self.n += 1
        name = f"b{self.n}"
        ca = TestCA()
        # a fresh install root: nothing of an earlier round is on the target
        options = self.target.options(**{"install-root": f"{self.target.dir}/r{self.n}"})
        t0 = time.perf_counter()
        host = await provisioning.provision(self.kernel, self.driver, HostRequest(name=name, options=options),
                                            lambda h: ca.engine_tls(h.addresses))
        elapsed = time.perf_counter() - t0
        await self.driver.remove(host)
        return elapsed

    async def daemon(self) -> float:
        from benchmarks_netns import start_plain  # type: ignore[import-not-found]

        root = self.work / f"p{self.n}"
        self.n += 1
        t0 = time.perf_counter()
        proc = await start_plain(self.ctx.python, root)
        elapsed = time.perf_counter() - t0
        await asyncio.to_thread(stop_dockyardd, proc, root)
        return elapsed


def _netns_module() -> None:
    """The plain-daemon floor is netns_hosts.py's (same probe, same back-off): load it once."""
    import importlib.util

    if "benchmarks_netns" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location("benchmarks_netns", Path(__file__).with_name("netns_hosts.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["benchmarks_netns"] = module


async def measure(ctx: Context, results: dict[str, Result], rounds: int) -> None:
    _netns_module()
    work = Path(tempfile.mkdtemp(prefix="dyb-", dir="/tmp"))
    bench = Bench(ctx, work)
    steps = {results["fresh"].name: lambda: bench.host(True), results["cached"].name: lambda: bench.host(False),
             results["daemon"].name: bench.daemon}
    samples: dict[str, list[float]] = {name: [] for name in steps}
    try:
        await bench.open()
        order = list(steps)
        for i in range(rounds + 1):
            for name in order[i % len(order):] + order[:i % len(order)]:
                if name == results["cached"].name:  # the cache of the run before it, whatever the order
                    await asyncio.to_thread(bench.driver.installer.cache_dir.mkdir, parents=True, exist_ok=True)
                seconds = await steps[name]()
                if i:
                    samples[name].append(seconds)
            ctx.log(f"  round {i}/{rounds}: " + ", ".join(f"{n.split(' (')[0]} {s[-1]:.2f} s"
                                                           for n, s in samples.items() if s))
    finally:
        await bench.close()
        shutil.rmtree(work, ignore_errors=True)
    for r in results.values():
        fill(r, sample_stats(samples[r.name]))


def run(ctx: Context) -> list[Result]:
    fresh = Result(benchmark=BENCH, name="ssh host on a fresh target (wheelhouse made) → engine answers",
                   command="provisioning.provision(kernel, ssh, HostRequest(name, ssh-*)), empty wheelhouse cache")
    cached = Result(benchmark=BENCH, name="ssh host on a fresh target (wheelhouse cached) → engine answers",
                    command="provisioning.provision(kernel, ssh, HostRequest(name, ssh-*)), cached wheelhouse")
    daemon = Result(benchmark=BENCH, name="dockyardd start → answers", role="peer",
                    command=f"{ctx.python} -m dockyard.daemon --data-root … -H unix://… until /_ping")
    results = {"fresh": fresh, "cached": cached, "daemon": daemon}
    why = ""
    if os.geteuid() != 0:
        why = "ssh targets need root"
    elif not os.path.exists("/usr/sbin/sshd"):
        why = "openssh-server is not installed (make install)"
    elif Path(sys.executable).resolve() != ctx.python.resolve():
        why = f"run bench/run.py with {ctx.python}: the hosts are made in this process"
    if not why:
        try:
            asyncio.run(measure(ctx, results, ROUNDS or min(ctx.runs, 5)))
        except Exception as exc:  # noqa: BLE001 - reported as not measured, with the reason
            why = f"{type(exc).__name__}: {exc}"
    if why:
        for r in results.values():
            r.error = why
    out = list(results.values())
    add_ratios(out)
    return out
