"""``docker run -d`` through a swarm manager (issue 15, benchmarks (b) and (c)).

**(b) ``swarm_run_fake1000``**: a manager (``dockyardd --role manager --cluster-store etcd://...``,
the swarm's services, a real etcd from the SDK's ``start_etcd``) over 1,000 SIMULATED engines:
``dockyard_swarm.engines_fake`` -- FAKE Docker engines, all served by one child process on
loopback ports, answering just enough of the API (create, start, inspect, list...) and running
nothing. Their node records are written to etcd as the heartbeat writes them. A ``docker run
-d`` is timed as the two API calls the docker CLI makes for it, ``POST /containers/create``
then ``POST /containers/{id}/start``, sent to the manager's unix socket by a keep-alive client
(the CLI's own process start is not counted: it is the same with or without a manager).
``BENCH_SWARM_RUNS`` runs (default 2,000: two per node under spread), one after another, once
the manager has settled (``BENCH_SWARM_SETTLE`` s, default 15: its services' first fetch from
every node); p50/p90/p99, the manager's own CPU time per run (user + system, which the shared
machine's load moves far less than latency) and the load average before and after. **Floor**,
same run: the same two calls sent straight to one fake engine.
**Reference** (not measured here): Swarm classic, 1 manager, 1,000 nodes, Consul, Nov 2015:
``docker run`` p50/p90/p99 230/250/400 ms. Goal: p99 <= 40 ms.

**(c) ``swarm_run_netns5``**: five netns hosts (each a real dockyardd, mutual TLS, joined to
the etcd with ``--cluster-advertise``), a manager reaching them with its certificate, and the
same two calls for ``busybox sleep 60``: through the manager vs straight to one host's engine
over mutual TLS, interleaved, ``BENCH_SWARM_NETNS_RUNS`` each (default 30); containers removed
after. What the manager adds = median(through) - median(straight). Goal: <= 30 ms.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import Context, Goal, Result, add_ratios, fill, sample_stats

FAKE = "swarm_run_fake1000"
NETNS = "swarm_run_netns5"
NODES = int(os.environ.get("BENCH_SWARM_NODES", "1000"))
RUNS = int(os.environ.get("BENCH_SWARM_RUNS", "2000"))
NETNS_RUNS = int(os.environ.get("BENCH_SWARM_NETNS_RUNS", "30"))
#: Seconds the manager is left to settle after it answers: its services' first fetch from every
#: node (images, networks, volumes, /info, the event streams: ~5,000 requests at 1,000 nodes).
SETTLE_S = float(os.environ.get("BENCH_SWARM_SETTLE", "15"))
SWARM_2015 = (230.0, 250.0, 400.0)
GOAL_P99_MS = 40.0
GOAL_ADDED_MS = 30.0


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s)) - 1))]


def percentiles(samples: list[float]) -> str:
    ms = [x * 1000 for x in samples]
    return f"p50/p90/p99 {pct(ms, 50):.1f}/{pct(ms, 90):.1f}/{pct(ms, 99):.1f} ms"


async def run_once(session: Any, base: str, body: dict[str, Any], ssl_ctx: Any = None,
                   version: str = "/v1.41") -> tuple[float, str]:
    """create + start; (seconds, id). The fake engine serves unversioned paths only."""
    t0 = time.perf_counter()
    async with session.post(f"{base}{version}/containers/create", json=body, ssl=ssl_ctx or False) as r:
        doc = await r.json()
        if r.status != 201:
            raise RuntimeError(f"create: {r.status} {doc}")
    async with session.post(f"{base}{version}/containers/{doc['Id']}/start", ssl=ssl_ctx or False) as r:
        if r.status not in (204, 304):
            raise RuntimeError(f"start: {r.status} {await r.text()}")
    return time.perf_counter() - t0, doc["Id"]


async def start_fakes(ctx: Context, work: Path, n: int) -> tuple[Any, list[dict[str, Any]]]:
    """``n`` fake engines in one process (``dockyard_swarm.engines_fake``): (process, their
    addresses as it wrote them). The process is stopped when they do not come up."""
    addrs = work / "fakes.json"
    with open(work / "fakes.log", "wb") as log:
        fakes = subprocess.Popen([str(ctx.python), "-m", "dockyard_swarm.engines_fake", str(n), str(addrs)],
                                 stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        for _ in range(600):
            if addrs.exists() or fakes.poll() is not None:
                break
            await asyncio.sleep(0.1)
        return fakes, json.loads(addrs.read_text())
    except BaseException:
        stop(fakes, 5)
        raise


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> str:
    return "/".join(Path("/proc/loadavg").read_text().split()[:3])


def start_manager(ctx: Context, root: Path, url: str, tls: dict[str, str] | None = None,
                  timeout: float = 60) -> tuple[Any, Path]:
    sock = root / "run" / "dockyard.sock"
    root.mkdir(parents=True, exist_ok=True)
    config = {"role": "manager", "cluster-store": url, **(tls or {})}
    (root / "daemon.json").write_text(json.dumps(config))
    with open(root / "daemon.log", "wb") as log:
        proc = subprocess.Popen([str(ctx.python), "-m", "dockyard.daemon", "--data-root", str(root / "data"),
                                 "--exec-root", str(root / "run"), "-H", f"unix://{sock}",
                                 "--config-file", str(root / "daemon.json")],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    from harness import wait_for_socket

    try:
        wait_for_socket(proc, sock, "manager", timeout=timeout)
    except RuntimeError:
        stop(proc)
        raise RuntimeError("manager did not start: " + (root / "daemon.log").read_text(errors="replace")[-800:]) from None
    return proc, sock


def stop(proc: Any, grace: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def register(url: str, nodes: list[dict[str, Any]]) -> None:
    """Node records as the heartbeat writes them (a long interval: no heartbeat during the run)."""
    from dockyard.config import Config
    from dockyard.kernel import Kernel

    root = tempfile.mkdtemp(prefix="dyb-")
    kernel = Kernel.build(Config(values={"cluster-store": url, "data-root": root}), environ={})
    try:
        store = await kernel.cluster_store()
        now = time.time()
        for n in nodes:
            record = {"name": n["name"], "addr": n["addr"], "labels": {}, "heartbeat": now, "interval": 3600,
                      "ttl": 7200, "engine": {"ID": n["id"], "Cpus": n["ncpu"], "Memory": n["memory"],
                                              "ServerVersion": "20.10.0-fake", "KernelVersion": "6.1.0-fake",
                                              "OperatingSystem": "Fake OS", "Driver": "fake",
                                              "Architecture": "x86_64"}}
            await store.put(f"nodes/{n['name']}", json.dumps(record).encode())
    finally:
        await kernel.stop()
        shutil.rmtree(root, ignore_errors=True)


async def wait_nodes(url: str, n: int, timeout: float = 30) -> None:
    from dockyard.config import Config
    from dockyard.kernel import Kernel

    root = tempfile.mkdtemp(prefix="dyb-")
    kernel = Kernel.build(Config(values={"cluster-store": url, "data-root": root}), environ={})
    try:
        store = await kernel.cluster_store()
        deadline = time.monotonic() + timeout
        while len(await store.list("nodes/")) < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {n} nodes joined within {timeout:g} s")
            await asyncio.sleep(0.2)
    finally:
        await kernel.stop()
        shutil.rmtree(root, ignore_errors=True)


async def measure_fake(ctx: Context, work: Path, subject: Result, floor: Result) -> str:
    import aiohttp

    from dockyard_plugin_sdk.testing import start_etcd

    etcd = await asyncio.to_thread(start_etcd, work / "etcd", 1)
    fakes = manager = None
    try:
        fakes, nodes = await start_fakes(ctx, work, NODES)
        url = etcd.url("bench")
        await register(url, nodes)
        manager, sock = await asyncio.to_thread(start_manager, ctx, work / "manager", url)
        await asyncio.sleep(SETTLE_S)
        body = {"Image": "busybox", "Cmd": ["sleep", "60"], "HostConfig": {}}
        conn = aiohttp.UnixConnector(path=str(sock))
        async with aiohttp.ClientSession(connector=conn) as s:
            for _ in range(20):  # warm-up: the manager's node view, the connections
                await run_once(s, "http://manager", body)
            cpu0, load0 = cpu_seconds(manager.pid), loadavg()
            samples = [(await run_once(s, "http://manager", body))[0] for _ in range(RUNS)]
            cpu = (cpu_seconds(manager.pid) - cpu0) * 1000 / RUNS
        fill(subject, sample_stats(samples))
        async with aiohttp.ClientSession() as s:
            base = f"http://{nodes[0]['addr']}"
            for _ in range(20):
                await run_once(s, base, body, version="")
            direct = [(await run_once(s, base, body, version=""))[0] for _ in range(min(RUNS, 500))]
        fill(floor, sample_stats(direct))
        # the manager's own CPU per run varies far less with the machine's load than latency
        return f"{percentiles(samples)}; manager CPU {cpu:.2f} ms a run; load {load0} before, {loadavg()} after"
    finally:
        if manager is not None:
            stop(manager)
        if fakes is not None:
            stop(fakes, 5)
        etcd.close()


async def measure_netns(ctx: Context, work: Path, subject: Result, floor: Result) -> None:
    import aiohttp

    from dockyard_plugin_sdk.testing import NetnsHosts, start_etcd

    netns = await NetnsHosts.open(work / "n")
    etcd = manager = None
    try:
        gateway = str(netns.driver.gateway.ip)
        etcd = await asyncio.to_thread(start_etcd, work / "etcd", 1, gateway)
        url = etcd.url("benchnetns")
        options = ["--cluster-store", url, "--cluster-advertise", "eth0:2376"]
        hosts = await netns.create(5, engine_options=options)
        await asyncio.gather(*(asyncio.to_thread(h.bootstrap, "busybox") for h in hosts))
        certs = netns.ca.write_client(work / "manager-certs", "swarm manager")
        tls = {"tlsverify": True, "tlscacert": str(certs / "ca.pem"), "tlscert": str(certs / "cert.pem"),
               "tlskey": str(certs / "key.pem")}
        await wait_nodes(url, 5)
        manager, sock = await asyncio.to_thread(start_manager, ctx, work / "manager", url, tls)
        direct_host = hosts[0]
        ctx_ssl = ssl.create_default_context(cafile=str(direct_host.cert_path / "ca.pem"))
        ctx_ssl.load_cert_chain(str(direct_host.cert_path / "cert.pem"), str(direct_host.cert_path / "key.pem"))
        direct_base = f"https://{direct_host.address}:2376"
        body = {"Image": "busybox", "Cmd": ["sleep", "60"], "HostConfig": {}}
        through: list[float] = []
        straight: list[float] = []
        made: list[tuple[str, str]] = []
        async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock))) as m, \
                aiohttp.ClientSession() as d:
            for _ in range(3):
                made.append(("m", (await run_once(m, "http://m", body))[1]))
                made.append(("d", (await run_once(d, direct_base, body, ctx_ssl))[1]))
            for i in range(NETNS_RUNS):
                order = [("m", m, "http://m", None), ("d", d, direct_base, ctx_ssl)]
                for tag, sess, base, sc in (order if i % 2 == 0 else order[::-1]):
                    t, cid = await run_once(sess, base, body, sc)
                    (through if tag == "m" else straight).append(t)
                    made.append((tag, cid))
            for tag, cid in made:  # not timed
                sess, base, sc = (m, "http://m", None) if tag == "m" else (d, direct_base, ctx_ssl)
                async with sess.delete(f"{base}/v1.41/containers/{cid}?force=1", ssl=sc or False) as r:
                    await r.read()
        fill(subject, sample_stats(through))
        fill(floor, sample_stats(straight))
    finally:
        if manager is not None:
            stop(manager)
        await netns.close()
        if etcd is not None:
            etcd.close()


def run(ctx: Context) -> list[Result]:
    fake = Result(benchmark=FAKE, name=f"docker run -d via manager → {NODES} fake engines",
                  command="POST /containers/create + /start → dockyardd --role manager (unix socket)")
    fake_floor = Result(benchmark=FAKE, name="docker run -d → one fake engine directly", role="peer",
                        command="POST /containers/create + /start → dockyard_swarm.engines_fake (loopback)")
    via = Result(benchmark=NETNS, name="docker run -d via manager → 5 netns hosts",
                 command="POST /containers/create + /start (busybox sleep 60) → manager → node (mutual TLS)")
    direct = Result(benchmark=NETNS, name="docker run -d → one netns host's dockyardd", role="peer",
                    command="POST /containers/create + /start (busybox sleep 60) → node (mutual TLS)")
    why = "" if os.geteuid() == 0 else "netns hosts need root"
    if Path(sys.executable).resolve() != ctx.python.resolve():
        why = f"run bench/run.py with {ctx.python}"
    fake_text = ""
    work = Path(tempfile.mkdtemp(prefix="dybs", dir="/tmp"))
    try:
        try:
            fake_text = asyncio.run(measure_fake(ctx, work / "b", fake, fake_floor))
        except Exception as exc:  # noqa: BLE001 - reported as not measured
            fake.error = fake_floor.error = f"{type(exc).__name__}: {exc}"
        if why:
            via.error = direct.error = why
        else:
            try:
                asyncio.run(measure_netns(ctx, work / "c", via, direct))
            except Exception as exc:  # noqa: BLE001
                via.error = direct.error = f"{type(exc).__name__}: {exc}"
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out = [fake, fake_floor, via, direct]
    add_ratios(out)
    p99 = None
    if fake.measured and fake_text:
        p99 = float(fake_text.split()[1].split("/")[2])
    fake.goals.append(Goal(f"p99 ≤ {GOAL_P99_MS:g} ms (Swarm classic 2015: p50/p90/p99 "
                           f"{'/'.join(f'{x:g}' for x in SWARM_2015)} ms)",
                           None if p99 is None else p99 <= GOAL_P99_MS, fake_text))
    added = (via.median_ms - direct.median_ms) if via.measured and direct.measured else None
    via.goals.append(Goal(f"the manager adds ≤ {GOAL_ADDED_MS:g} ms", None if added is None else added <= GOAL_ADDED_MS,
                          "" if added is None else f"{added:.1f} ms (medians {via.median_ms:.1f} vs "
                                                   f"{direct.median_ms:.1f} ms)"))
    return out


if __name__ == "__main__":  # one benchmark alone: python bench/benchmarks/swarm_run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    for r in run(Context()):
        print(r.name, r.median_ms, r.error, [(g.text, g.met, g.detail) for g in r.goals])
    _ = statistics
