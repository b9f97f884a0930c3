"""qemu hosts: the guest image (built, then cached) and a VM booted until its engine answers.

**Subjects** (issue 14, item 4):

* ``qemu_image`` -- the driver's Debian 12 image built from scratch (``image.ensure`` into an
  empty temporary cache: mmdebstrap, kernel and initrd copied out, ``mkfs.ext4 -d``;
  ``BENCH_QEMU_BUILDS`` builds, default 1, ~40 s each) and found in the machine-wide cache
  (``image.ensure`` of the image the VMs use: what every create after the first pays).
* ``qemu_host`` -- one host made through the ``qemu`` provision driver as any caller makes it (a
  kernel loads the driver from the registry and hands it dockyard-provision-ssh's
  ``EngineInstaller``; ``dockyard.provisioning.provision`` with a ``TestCA`` certificate for
  127.0.0.1), timed until ``create`` returns: the VM booted, the engine installed over SSH
  (wheels, venv, unit, TLS) and answering ``/_ping`` over mutual TLS on its forwarded port. The
  host's record splits it: boot → SSH, and the install.
* ``qemu_host`` too: the same host powered off (ACPI) and started again, timed until its
  engine's TLS listener answers: boot → engine ready, nothing installed. The goal (≤ 20 s) is
  for KVM; on a machine without usable KVM (here: kvm_pvm) the VM runs under TCG and the goal
  is reported as not applicable, with the figure.

**Floor**, in the same run: a plain ``python -m dockyard.daemon`` on this machine timed until its
socket answers ``/_ping``: the engine's own start-up, which a VM adds a kernel, systemd, SSH and
(for a create) the install to.

Rounds: ``BENCH_QEMU_ROUNDS`` (default 2; each creates, stops, starts and removes one VM,
~2 minutes under TCG), interleaved with the floor; the first round is recorded too (no warm-up:
each VM starts from the same cached image).
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

IMAGE = "qemu_image"
HOST = "qemu_host"
GOAL_START_S = 20.0
ROUNDS = int(os.environ.get("BENCH_QEMU_ROUNDS", "2"))
BUILDS = int(os.environ.get("BENCH_QEMU_BUILDS", "1"))


async def _ping(sock: Path) -> bool:
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


async def plain_daemon(python: Path, root: Path) -> float:
    """Seconds for a plain dockyardd to answer ``/_ping``; stopped and purged afterwards."""
    root.mkdir(parents=True)
    sock = root / "run" / "dockyard.sock"
    t0 = time.perf_counter()
    with open(root / "daemon.log", "wb") as log:
        proc = subprocess.Popen([str(python), "-m", "dockyard.daemon", "--data-root", str(root / "data"),
                                 "--exec-root", str(root / "run"), "-H", f"unix://{sock}"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        delay = 0.005
        while not (sock.exists() and await _ping(sock)):
            if proc.poll() is not None:
                raise RuntimeError(f"dockyardd exited {proc.returncode}")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 0.05)
        return time.perf_counter() - t0
    finally:  # in a thread: pyroute2's sync API (the purge) runs an event loop of its own
        await asyncio.to_thread(stop_dockyardd, proc, root)


async def measure(ctx: Context, results: dict[str, Result], rounds: int, builds: int) -> str:
    """Fills ``results``; returns the accelerator the VMs ran with."""
    from dockyard import provisioning
    from dockyard.config import Config
    from dockyard.kernel import Kernel
    from dockyard.specs.provision import HostRequest
    from dockyard_plugin_sdk.testing import TestCA
    from dockyard_provision_qemu import image

    samples: dict[str, list[float]] = {r.name: [] for r in results.values()}
    work = Path(tempfile.mkdtemp(prefix="dyb-q-", dir="/tmp"))
    kernel = None
    try:
        cache = image.DEFAULT_CACHE
        for i in range(builds):
            scratch = work / f"cache{i}"
            t0 = time.perf_counter()
            await image.ensure(scratch, image.Recipe(), say=lambda line: None)
            samples[results["build"].name].append(time.perf_counter() - t0)
            ctx.log(f"  image build {i + 1}/{builds}: {samples[results['build'].name][-1]:.1f} s")
            shutil.rmtree(scratch, ignore_errors=True)
        await image.ensure(cache, image.Recipe())  # the machine-wide image the VMs boot from
        for _ in range(max(ctx.runs, 5)):
            t0 = time.perf_counter()
            await image.ensure(cache, image.Recipe())
            samples[results["cached"].name].append(time.perf_counter() - t0)
        config = Config(values={"data-root": str(work / "k" / "d"), "exec-root": str(work / "k" / "r"),
                                "provision-opts": [f"image-cache={cache}"]})
        kernel = Kernel.build(config, environ={})
        driver = await kernel.driver_ready("provision", "qemu")
        ca = TestCA()
        accel = ""
        for i in range(rounds):
            samples[results["daemon"].name].append(await plain_daemon(ctx.python, work / f"p{i}"))
            t0 = time.perf_counter()
            host = await provisioning.provision(kernel, driver, HostRequest(name=f"bq{i}"),
                                                lambda h: ca.engine_tls(h.addresses))
            samples[results["host"].name].append(time.perf_counter() - t0)
            try:
                rec = driver._load(host)  # the phases the driver recorded
                accel = rec.accel
                samples[results["boot"].name].append(rec.boot_seconds)
                samples[results["install"].name].append(rec.install_seconds)
                await driver.stop(host)
                t0 = time.perf_counter()
                await driver.start(host)
                samples[results["start"].name].append(time.perf_counter() - t0)
            finally:
                await driver.remove(host)
            ctx.log(f"  round {i + 1}/{rounds} ({accel}): " + ", ".join(
                f"{key} {samples[results[key].name][-1]:.1f} s" for key in ("host", "boot", "install", "start", "daemon")))
    finally:
        if kernel is not None:
            await kernel.stop()
        shutil.rmtree(work, ignore_errors=True)
    for r in results.values():
        if samples[r.name]:
            fill(r, sample_stats(samples[r.name]))
    return accel


def run(ctx: Context) -> list[Result]:
    build = Result(benchmark=IMAGE, name="qemu image build (empty cache)",
                   command="image.ensure(<empty cache>, Recipe()): mmdebstrap + mkfs.ext4 -d")
    cached = Result(benchmark=IMAGE, name="qemu image (cached)", command="image.ensure(/var/cache/dockyard/qemu, Recipe())")
    host = Result(benchmark=HOST, name="qemu host create → engine answers",
                  command="provisioning.provision(kernel, qemu, HostRequest(name)): boot, install over SSH, /_ping over mTLS")
    boot = Result(benchmark=HOST, name="  of which boot → SSH", command="qemu started until the guest's sshd answers")
    install = Result(benchmark=HOST, name="  of which engine install", command="EngineInstaller.install (dockyard-provision-ssh)")
    start = Result(benchmark=HOST, name="qemu host start → engine answers",
                   command="driver.start(host) of a powered-off VM until its engine's TLS listener answers")
    daemon = Result(benchmark=HOST, name="dockyardd start → answers", role="peer",
                    command=f"{ctx.python} -m dockyard.daemon --data-root … -H unix://… until /_ping")
    results = {"build": build, "cached": cached, "host": host, "boot": boot, "install": install, "start": start,
               "daemon": daemon}
    why = ""
    if os.geteuid() != 0:
        why = "building the image needs root"
    elif shutil.which("qemu-system-x86_64") is None:
        why = "qemu-system-x86_64 is not installed (apt-get install qemu-system-x86 qemu-utils)"
    elif Path(sys.executable).resolve() != ctx.python.resolve():
        why = f"run bench/run.py with {ctx.python}: the hosts are made in this process"
    accel = ""
    if not why:
        try:
            accel = asyncio.run(measure(ctx, results, ROUNDS, BUILDS))
        except Exception as exc:  # noqa: BLE001 - reported as not measured, with the reason
            why = f"{type(exc).__name__}: {exc}"
    if why:
        for r in results.values():
            r.error = why
    out = list(results.values())
    add_ratios(out)
    if start.median_ms is not None:
        figure = f"{start.median_ms / 1000:.1f} s under {accel or '?'}; the floor {daemon.median_ms / 1000:.2f} s" \
            if daemon.median_ms is not None else f"{start.median_ms / 1000:.1f} s"
        met = start.median_ms <= GOAL_START_S * 1000 if accel == "kvm" else None
        start.goals.append(Goal(f"qemu host boot → engine ready ≤ {GOAL_START_S:g} s with KVM", met,
                                figure + ("" if accel == "kvm" else " (TCG: software emulation, the goal is for KVM)")))
    return out
