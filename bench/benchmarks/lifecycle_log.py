"""What the signed lifecycle log costs (dockyard-provenance's ``provenance-log`` plugin: every
event chained, Ed25519-signed and written by a thread, each mutating request answered only once
its events are written).

**Subjects and peers, same run**: two dockyardd, one with the plugin, one started with
``DOCKYARD_DISABLE_PLUGINS=provenance-log`` (no journal: events stay in memory only).

- ``log_run_rm``: ``docker run --rm busybox true``, interleaved (``BENCH_LOG_RUNS``, default
  30 each); the subject's ``median_ms`` is the median of per-pair differences (with − without).
- ``log_burst``: 100 ``docker run -d busybox sleep 600`` started at once (``BENCH_LOG_BURST``),
  wall time until every CLI returned, with then without (``BENCH_LOG_BURST_ROUNDS``, default 1,
  each followed by ``rm -f`` of the burst); then the log is checked: every container has its
  ``create`` and ``start`` entry and ``verify`` passes.

Goal (issue 18): the log adds ≤ 2 ms to ``docker run --rm busybox true``; the burst: reported.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from harness import Context, Goal, Result, start_dockyardd, stop_dockyardd

NAME = "lifecycle_log"
MAX_ADDED_MS = 2.0


def _start(ctx: Context, root: Path, disabled: bool) -> tuple[subprocess.Popen[bytes], str]:
    old = os.environ.get("DOCKYARD_DISABLE_PLUGINS")
    if disabled:
        os.environ["DOCKYARD_DISABLE_PLUGINS"] = "provenance-log"
    try:
        return start_dockyardd(ctx, root)
    finally:
        if old is None:
            os.environ.pop("DOCKYARD_DISABLE_PLUGINS", None)
        else:
            os.environ["DOCKYARD_DISABLE_PLUGINS"] = old


def _timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True, timeout=120)
    return time.perf_counter() - t0


def _burst(docker: str, host: str, n: int) -> tuple[float, list[str], list[str]]:
    """Wall time of ``n`` concurrent ``docker run -d``, the IDs made, the errors of those that failed."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen([docker, "-H", host, "run", "-d", "busybox", "sleep", "600"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    ids, errors = [], []
    for p in procs:
        out, err = p.communicate(timeout=600)
        if p.returncode != 0:
            errors.append(err.strip()[-300:])
        else:
            ids.append(out.strip())
    took = time.perf_counter() - t0
    return took, ids, errors


def _remove_all(docker: str, host: str) -> None:
    ids = subprocess.run([docker, "-H", host, "ps", "-aq"], capture_output=True, text=True, timeout=60).stdout.split()
    for i in range(0, len(ids), 25):
        subprocess.run([docker, "-H", host, "rm", "-f", *ids[i:i + 25]], capture_output=True, timeout=300)


def _stats(r: Result, samples_ms: list[float]) -> None:
    r.median_ms = statistics.median(samples_ms)
    r.mean_ms = statistics.fmean(samples_ms)
    r.stddev_ms = statistics.pstdev(samples_ms)
    r.min_ms, r.max_ms, r.runs = min(samples_ms), max(samples_ms), len(samples_ms)


def run(ctx: Context) -> list[Result]:
    docker = shutil.which("docker") or "docker"
    runs = int(os.environ.get("BENCH_LOG_RUNS", "30"))
    burst_n = int(os.environ.get("BENCH_LOG_BURST", "100"))
    rounds = int(os.environ.get("BENCH_LOG_BURST_ROUNDS", "1"))
    with_log = Result(benchmark=NAME, name="log_run_rm: docker run --rm (with the log)",
                      command="docker run --rm busybox true → dockyardd with provenance-log")
    without = Result(benchmark=NAME, name="log_run_rm: docker run --rm (without)", role="peer",
                     command="the same → dockyardd with DOCKYARD_DISABLE_PLUGINS=provenance-log")
    added = Result(benchmark=NAME, name="log_run_rm: added (median of pair differences)",
                   command="with − without, interleaved pairs")
    burst = Result(benchmark=NAME, name=f"log_burst: {burst_n} × docker run -d at once (with the log)",
                   command=f"{burst_n} concurrent docker run -d busybox sleep 600")
    burst_peer = Result(benchmark=NAME, name=f"log_burst: {burst_n} × docker run -d at once (without)", role="peer",
                        command="the same → dockyardd without the plugin")
    results = [with_log, without, added, burst, burst_peer]
    if shutil.which("docker") is None:
        for r in results:
            r.error = "the docker CLI is not installed"
        return results
    work = ctx.work_dir / "dockyard-bench-lifecycle-log"
    a = b = None
    host_a = host_b = ""
    try:
        a, host_a = _start(ctx, work / "with", disabled=False)
        b, host_b = _start(ctx, work / "without", disabled=True)
        for host in (host_a, host_b):  # warm up both
            for _ in range(max(1, ctx.warmup)):
                _timed([docker, "-H", host, "run", "--rm", "busybox", "true"])
        ta: list[float] = []
        tb: list[float] = []
        for i in range(runs):
            order = ((host_a, ta), (host_b, tb)) if i % 2 == 0 else ((host_b, tb), (host_a, ta))
            for host, out in order:
                out.append(_timed([docker, "-H", host, "run", "--rm", "busybox", "true"]) * 1000)
        _stats(with_log, ta)
        _stats(without, tb)
        _stats(added, [x - y for x, y in zip(ta, tb, strict=True)])
        with_log.ratios[without.name] = with_log.median_ms / without.median_ms  # type: ignore[operator]
        ctx.log(f"  run --rm: with {with_log.median_ms:.1f} ms, without {without.median_ms:.1f} ms, "
                f"added {added.median_ms:+.2f} ms (median of {runs} pairs)")
        ba: list[float] = []
        bb: list[float] = []
        all_ids: list[str] = []
        failures: list[str] = []
        for _ in range(rounds):
            for host, out in ((host_a, ba), (host_b, bb)):
                took, ids, errors = _burst(docker, host, burst_n)
                out.append(took * 1000)
                failures += [f"{'with' if host == host_a else 'without'}: {e}" for e in errors]
                if host == host_a:
                    all_ids += ids
                _remove_all(docker, host)
        if failures:
            ctx.log(f"  {len(failures)} docker run -d of the bursts failed, first: {failures[0]}")
            burst.goals.append(Goal("every docker run -d of the bursts succeeds", False,
                                    f"{len(failures)} failed; first: {failures[0]}"))
        _stats(burst, ba)
        _stats(burst_peer, bb)
        burst.ratios[burst_peer.name] = burst.median_ms / burst_peer.median_ms  # type: ignore[operator]
        ctx.log(f"  burst of {burst_n}: with {burst.median_ms:.0f} ms, without {burst_peer.median_ms:.0f} ms")
        # nothing lost under load: every container of the bursts has its create and start entries
        from dockyard_provenance.journal import LOG_NAME, Entry, read_entries, verify

        logdir = work / "with" / "data" / "provenance"
        seen: dict[str, set[str]] = {}
        for e in read_entries(logdir / LOG_NAME):
            if isinstance(e, Entry):
                seen.setdefault(str(e.event.get("actor")), set()).add(str(e.event.get("action")))
        missing = [i for i in all_ids if not {"create", "start", "destroy"} <= seen.get(i, set())]
        verdict = verify(logdir)
        burst.goals.append(Goal("every burst container's create, start and destroy are in the log; verify passes",
                                not missing and verdict.ok,
                                f"{len(all_ids) - len(missing)}/{len(all_ids)} complete; {verdict.entries} entries, "
                                f"verify {'OK' if verdict.ok else verdict.problem}"))
    except (RuntimeError, subprocess.SubprocessError) as exc:
        for r in results:
            if not r.measured:
                r.error = str(exc)[-300:]
    finally:
        for proc, host, root in ((a, host_a, work / "with"), (b, host_b, work / "without")):
            if proc is not None:
                try:
                    _remove_all(docker, host)  # nothing left running when the daemon stops
                finally:
                    stop_dockyardd(proc, root)
    if added.measured:
        added.goals.append(Goal(f"the log adds ≤ {MAX_ADDED_MS:.0f} ms to docker run --rm busybox true",
                                added.median_ms <= MAX_ADDED_MS,  # type: ignore[operator]
                                f"{added.median_ms:+.2f} ms (median of {added.runs} interleaved pairs)"))
    return results
