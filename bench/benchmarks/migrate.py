"""Live migration between two netns hosts: frozen time, total time, bytes moved.

**Subject** (issue 17): ``dockyard migrate`` of a running container holding a working set of
16, 256 and 1024 MiB (``migrate_assets/memhog.c``: every page filled, a counter served on TCP
7000, each reply reading one byte per MiB of the set) from h1 to h2, by stop-and-copy and by
lazy pages (post-copy from CRIU's page server on h1). The client, in this machine's namespace,
asks the published port 7000 on h1 and then on h2 every few milliseconds (a new connection per
request, 20 ms timeout); **frozen** is the last reply before the freeze (from h1) to the first
after (from h2), whose counter must be the next one and whose sum the same (state intact).
Total is the CLI's wall time; bytes are what went over the wire (the engine's figure).

**Peer**, in the same run: ``podman container checkpoint --export`` + ``podman container
restore --import`` of the same container on this machine (runc + the same CRIU 4.x, archive
uncompressed), frozen time measured the same way on its published port; bytes = the archive.

Goal (issue 17, QEMU's default downtime limit): frozen ≤ 300 ms for 256 MiB with lazy pages.
One run of each (the 2 shared cores make repeats expensive); ``BENCH_MIGRATE_SIZES`` overrides
the sizes (MiB, comma-separated), ``BENCH_MIGRATE_MODES`` the rows (``stop-copy,lazy,podman``),
``BENCH_MIGRATE_RUNS`` the runs of each (the median reported; the load average is logged with each).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from harness import Context, Goal, Result, fill, sample_stats

BENCH = "migrate"
ASSETS = Path(__file__).parent / "migrate_assets"
SIZES = [int(s) for s in os.environ.get("BENCH_MIGRATE_SIZES", "16,256,1024").split(",")]
#: runs of each row (the median is reported); each run moves a fresh container
RUNS = max(1, int(os.environ.get("BENCH_MIGRATE_RUNS", "1")))
#: which rows to measure: stop-copy, lazy, podman (the peer); all by default
MODES = [m for m in os.environ.get("BENCH_MIGRATE_MODES", "stop-copy,lazy,podman").split(",") if m]
CRIU_PATH = "/opt/criu/sbin"


def build_memhog(work: Path) -> Path:
    out = work / "memhog"
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(ASSETS / "memhog.c")], check=True)
    return out


def ask(addr: str, port: int, timeout: float = 0.02, wait: float = 2.0) -> tuple[int, int] | None:
    try:
        with socket.create_connection((addr, port), timeout=timeout) as s:
            s.settimeout(wait)
            s.sendall(b"x\n")
            data = s.recv(64).split()
            return int(data[0]), int(data[1])
    except (OSError, ValueError, IndexError):
        return None


class Prober:
    """Asks ``before`` and ``after``; records the last reply from ``before`` and the first
    from ``after`` whose count is higher.

    Two addresses (a migration): one thread asks each, all along, so a reply the source is
    slow to give while runc and CRIU start up (this machine's 2 cores are shared) still counts
    as "before": the window starts at the source's last reply, not at its first slow one. One
    address (podman's restore on the same host): one thread, and the first unanswered request
    starts the window."""

    def __init__(self, before: tuple[str, int], after: tuple[str, int]) -> None:
        self.before, self.after = before, after
        self.last_before: tuple[float, tuple[int, int]] | None = None
        self.first_after: tuple[float, tuple[int, int]] | None = None
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True)]
        if before != after:
            self._threads = [threading.Thread(target=self._ask_before, daemon=True),
                             threading.Thread(target=self._ask_after, daemon=True)]
        for t in self._threads:
            t.start()

    def _ask_before(self) -> None:
        while not self._stop.is_set() and self.first_after is None:
            r = ask(*self.before, wait=0.05)  # a frozen server accepts (backlog) but never answers
            if r is not None and self.first_after is None:
                self.last_before = (time.perf_counter(), r)
            time.sleep(0.002)

    def _ask_after(self) -> None:
        while not self._stop.is_set():
            # a request that lands while the target restores can be lost with its connection
            # (dropped by CRIU's network lock): ask again after 250 ms rather than wait on it
            r = ask(*self.after, wait=0.25)
            if r is not None and self.last_before is not None and r[0] > self.last_before[1][0]:
                self.first_after = (time.perf_counter(), r)
                return
            time.sleep(0.002)

    def _run(self) -> None:
        gap = False
        while not self._stop.is_set():
            if not gap:
                r = ask(*self.before, wait=0.05)  # a frozen server accepts (backlog) but never answers
                if r is not None:
                    self.last_before = (time.perf_counter(), r)
                elif self.last_before is not None:
                    gap = True  # frozen (or gone): from now on the first reply after counts
            else:
                r = ask(*self.after, wait=0.25)
                if r is not None and self.last_before is not None and r[0] > self.last_before[1][0]:
                    self.first_after = (time.perf_counter(), r)
                    return
            time.sleep(0.002)

    def wait(self, timeout: float) -> tuple[float, bool]:
        """Frozen ms and whether the state came along (next count, same sum)."""
        self._threads[-1].join(timeout)
        self._stop.set()
        for t in self._threads:
            t.join(1)
        if self.first_after is None or self.last_before is None:
            raise RuntimeError("the service did not answer after the move")
        (t0, (c0, s0)), (t1, (c1, s1)) = self.last_before, self.first_after
        return (t1 - t0) * 1000, c1 > c0 and s1 == s0


def _warm(addr: str, port: int, timeout: float = 60) -> tuple[int, int]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        r = ask(addr, port, 0.5)
        if r is not None:
            return r
        time.sleep(0.05)
    raise RuntimeError(f"memhog on {addr}:{port} did not answer")


def _migrate_once(ctx: Context, h1: Any, h2: Any, memhog: Path, mib: int, mode: str) -> dict[str, Any]:
    name = f"m{mib}{mode[0]}"
    h1.docker("create", "--name", name, "-p", "7000:7000", "busybox", "/memhog", str(mib))
    h1.docker("cp", str(memhog), f"{name}:/memhog")
    h1.docker("start", name)
    _warm(h1.address, 7000)
    time.sleep(0.2)
    prober = Prober((h1.address, 7000), (h2.address, 7000))
    time.sleep(0.1)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_"))}
    env.update({k: v for k, v in h1.docker_env().items() if k != "DOCKER_CONFIG"})
    sent0 = _sent(h1)
    t = time.perf_counter()
    try:
        out = subprocess.run([str(ctx.venv_bin / "dockyard"), "migrate", "--json", "--mode", mode, name, h2.url],
                             env=env, capture_output=True, text=True, timeout=600)
        total = (time.perf_counter() - t) * 1000
        if out.returncode != 0:
            raise RuntimeError(f"dockyard migrate failed: {(out.stderr or out.stdout)[-500:]}")
        result = [json.loads(x) for x in out.stdout.splitlines() if '"Result"' in x][-1]["Result"]
        frozen, intact = prober.wait(60)
        moved = _settled(h1) - sent0  # lazy pages go on after the CLI returned
    finally:
        prober._stop.set()
        for h in (h1, h2):
            h.docker("rm", "-f", name, check=False)
    return {"frozen": frozen, "intact": intact, "total": total, "bytes": moved, "wire": result["Bytes"],
            "engine_frozen": result["FrozenMs"], "phases": result["Phases"]}


def _sent(host: Any) -> int:
    """Bytes h1 has sent so far (its veth's peer in this namespace receives them)."""
    return int(Path(f"/sys/class/net/{host.host.extra['veth']}/statistics/rx_bytes").read_text())


def _settled(host: Any, quiet: float = 1.0, timeout: float = 120) -> int:
    last, since, end = _sent(host), time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < end:
        time.sleep(0.2)
        now = _sent(host)
        if now - last > 64 << 10:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    return _sent(host)


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{CRIU_PATH}:{os.environ.get('PATH', '')}"}
    out = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=600)
    if check and out.returncode != 0:
        raise RuntimeError(f"podman {args[0]} {args[1] if len(args) > 1 else ''}: {out.stderr.strip()[-400:]}")
    return out


def _podman_once(work: Path, memhog: Path, mib: int) -> dict[str, Any]:
    name = f"dybench-mig-{uuid.uuid4().hex[:6]}"
    archive = work / f"{name}.tar"
    port = 17000 + mib % 1000
    conf = work / "criu.conf"  # podman 4.3 has no --tcp-skip-in-flight: the same CRIU setting as ours
    conf.write_text("skip-in-flight\n")
    _podman("run", "-d", "--runtime", "runc", "--name", name, "-p", f"127.0.0.1:{port}:7000",
            "--annotation", f"org.criu.config={conf}",
            "-v", f"{memhog}:/memhog:ro", "busybox", "/memhog", str(mib))
    try:
        _warm("127.0.0.1", port)
        time.sleep(0.2)
        prober = Prober(("127.0.0.1", port), ("127.0.0.1", port))
        time.sleep(0.1)
        t = time.perf_counter()
        _podman("container", "checkpoint", "--export", str(archive), "--compress", "none", "--tcp-established", name)
        _podman("rm", "-f", name)
        _podman("container", "restore", "--import", str(archive), "--tcp-established")
        total = (time.perf_counter() - t) * 1000
        frozen, intact = prober.wait(60)
        return {"frozen": frozen, "intact": intact, "total": total, "bytes": archive.stat().st_size}
    finally:
        _podman("rm", "-f", name, check=False)
        archive.unlink(missing_ok=True)


async def measure(ctx: Context, rows: dict[str, Result], work: Path) -> None:
    from dockyard_plugin_sdk.testing import NetnsHosts
    from dockyard_plugin_sdk.testing.leaks import Owners

    memhog = build_memhog(work)
    netns = await NetnsHosts.open(work / "n", owners=Owners())
    try:
        h1, h2 = await netns.create(2, engine_options=["--default-runtime", "runc"])
        await asyncio.gather(*(asyncio.to_thread(h.bootstrap, "busybox") for h in (h1, h2)))
        for mib in SIZES:
            for mode in [m for m in ("stop-copy", "lazy") if m in MODES]:
                key = f"{mib}-{mode}"
                got = []
                try:
                    for _ in range(RUNS):
                        r = await asyncio.to_thread(_migrate_once, ctx, h1, h2, memhog, mib, mode)
                        ctx.log(f"migrate {key} (load {_load()}): {r}")
                        got.append(r)
                except Exception as exc:  # noqa: BLE001 - that row says why
                    rows[key].error = str(exc)[:300]
                    continue
                _note(rows[key], got)
            if "podman" not in MODES:
                continue
            got = []
            try:
                for _ in range(RUNS):
                    r = await asyncio.to_thread(_podman_once, work, memhog, mib)
                    ctx.log(f"podman {mib} (load {_load()}): {r}")
                    got.append(r)
                _note(rows[f"{mib}-podman"], got)
            except Exception as exc:  # noqa: BLE001
                rows[f"{mib}-podman"].error = str(exc)[:300]
    finally:
        await netns.close()


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _note(row: Result, runs: list[dict[str, Any]]) -> None:
    """The row's figures from every run; its words (total, bytes, phases) from the median one."""
    fill(row, sample_stats([r["frozen"] / 1000 for r in runs]))
    r = sorted(runs, key=lambda x: x["frozen"])[(len(runs) - 1) // 2]
    row.name += (f" — total {r['total']:.0f} ms, {r['bytes'] / 2**20:.1f} MiB moved"
                 + (f" ({r['wire'] / 2**20:.1f} MiB on the migration stream)" if "wire" in r else "")
                 + (f", engine-side frozen {r['engine_frozen']:.0f} ms" if "engine_frozen" in r else "")
                 + ("" if all(x["intact"] for x in runs) else ", STATE NOT INTACT")
                 + (f" (the median of {len(runs)} runs' figures)" if len(runs) > 1 else ""))
    row.command += f"  [{json.dumps(r.get('phases', {}))}]" if r.get("phases") else ""


def run(ctx: Context) -> list[Result]:
    rows: dict[str, Result] = {}
    for mib in SIZES:
        for mode in [m for m in ("stop-copy", "lazy") if m in MODES]:
            rows[f"{mib}-{mode}"] = Result(
                benchmark=f"{BENCH}_{mib}mib", name=f"dockyard migrate --mode {mode}, {mib} MiB working set: frozen",
                command=f"dockyard -H h1 migrate --mode {mode} C tcp://h2:2376")
        if "podman" not in MODES:
            continue
        rows[f"{mib}-podman"] = Result(
            benchmark=f"{BENCH}_{mib}mib", role="peer",
            name=f"podman checkpoint --export + restore --import, {mib} MiB, one host: frozen",
            command="podman container checkpoint --export F --compress none --tcp-established C (CRIU config skip-in-flight); "
                    "podman rm -f C; "
                    "podman container restore --import F --tcp-established")
    why = ""
    missing = [t for t in ("gcc", "docker", "podman", "runc", "conmon") if shutil.which(t) is None]
    if os.geteuid() != 0:
        why = "netns hosts need root"
    elif missing:
        why = f"not installed: {', '.join(missing)}"
    elif not os.access(f"{CRIU_PATH}/criu", os.X_OK):
        why = "CRIU 4.x not at /opt/criu (make install)"
    elif Path(sys.executable).resolve() != ctx.python.resolve():
        why = f"run bench/run.py with {ctx.python}: the hosts are made in this process"
    work = Path(f"/tmp/dybm{uuid.uuid4().hex[:6]}")
    if not why:
        work.mkdir(parents=True)
        try:
            asyncio.run(measure(ctx, rows, work))
        except Exception as exc:  # noqa: BLE001
            why = f"{type(exc).__name__}: {exc}"
        finally:
            shutil.rmtree(work, ignore_errors=True)
    for row in rows.values():
        if why and not row.error:
            row.error = why
    lazy = rows.get("256-lazy")
    if lazy is not None:
        lazy.goals.append(Goal("frozen ≤ 300 ms for 256 MiB with lazy pages",
                               None if lazy.median_ms is None else lazy.median_ms <= 300,
                               "" if lazy.median_ms is None else f"{lazy.median_ms:.0f} ms"))
    return list(rows.values())
