"""What benchmark modules and ``bench/run.py`` share: results, the run context, hyperfine, reports.

A benchmark module in ``bench/benchmarks/`` defines ``run(ctx: Context) -> list[Result]``. It
measures its subjects and their peers *in the same run* (one hyperfine invocation where it can),
so that ratios compare like with like on a noisy machine. A subject that cannot be measured
(not installed, exits non-zero) is still a :class:`Result`, with ``error`` saying why.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


@dataclass
class Goal:
    """A target from an issue (``dockyard --version <= 100 ms``), checked against this run."""

    text: str
    met: bool | None  # None: could not be checked (a figure is missing)
    detail: str = ""


@dataclass
class Result:
    """One measured command. Times are milliseconds. ``role`` is ``subject`` or ``peer``."""

    benchmark: str
    name: str
    command: str
    role: str = "subject"
    median_ms: float | None = None
    mean_ms: float | None = None
    stddev_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    runs: int = 0
    ratios: dict[str, float] = field(default_factory=dict)  # peer name -> median / peer median
    goals: list[Goal] = field(default_factory=list)
    error: str = ""

    @property
    def measured(self) -> bool:
        return self.median_ms is not None and not self.error


@dataclass
class Context:
    """What a benchmark gets: where things are and how hard to try."""

    root: Path = ROOT
    runs: int = 20
    warmup: int = 3
    work_dir: Path = field(default_factory=lambda: Path("/tmp"))
    log: Any = print

    @property
    def venv_bin(self) -> Path:
        return self.root / ".venv" / "bin"

    @property
    def python(self) -> Path:
        return self.venv_bin / "python"


def sample_stats(seconds: list[float]) -> dict[str, Any]:
    """hyperfine-shaped figures (seconds) of samples timed by a benchmark itself, for :func:`fill`."""
    return {"median": statistics.median(seconds), "mean": statistics.fmean(seconds),
            "stddev": statistics.stdev(seconds) if len(seconds) > 1 else 0.0,
            "min": min(seconds), "max": max(seconds), "times": seconds}


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    """What a failed command said last (stderr, else stdout)."""
    return ((proc.stderr or "").strip() or (proc.stdout or "").strip() or "no output").splitlines()[-1]


def wait_for_socket(proc: subprocess.Popen[bytes], sock: Path, what: str, timeout: float = 30.0) -> None:
    """Wait until ``proc`` accepts connections on the unix socket ``sock``; RuntimeError when it
    exits first or does not come up in ``timeout`` seconds (it is then stopped)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited {proc.returncode}")
        if sock.exists():
            with socket.socket(socket.AF_UNIX) as s:
                try:
                    s.connect(str(sock))
                    return
                except OSError:
                    pass
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError(f"{what} did not come up")


def stop_process(proc: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM a process we started, SIGKILL after ``grace`` seconds."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def iperf3_once(server_ns: str, client_ns: str, server_ip: str, seconds: int, port: int = 5201) -> float:
    """One TCP iperf3 run from ``client_ns`` to ``server_ns`` (network namespace paths for
    nsenter), the server on ``server_ip``:``port``; bits per second received."""
    server = subprocess.Popen(["nsenter", f"--net={server_ns}", "iperf3", "-s", "-1", "-B", server_ip,
                               "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while True:  # wait until the server listens
            ss = subprocess.run(["nsenter", f"--net={server_ns}", "ss", "-Htln", f"sport = :{port}"],
                                capture_output=True, text=True)
            if ss.stdout.strip():
                break
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"iperf3 server did not start: {(server.stderr.read() if server.stderr else '')[-300:]}")
            time.sleep(0.05)
        client = subprocess.run(["nsenter", f"--net={client_ns}", "iperf3", "-c", server_ip, "-p", str(port),
                                 "-t", str(seconds), "-J"], capture_output=True, text=True, timeout=seconds + 60)
        if client.returncode != 0:
            raise RuntimeError(f"iperf3 client exits {client.returncode}: {client.stdout[-300:]} {client.stderr[-300:]}")
        return float(json.loads(client.stdout)["end"]["sum_received"]["bits_per_second"])
    finally:
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def editable_sources(ctx: Context) -> list[Path]:
    """The source directories the ``.venv`` installs in editable mode (its ``__editable__*.pth``
    files), inside ``ctx.root``: our distributions' ``src`` directories."""
    found: list[Path] = []
    for pth in sorted((ctx.root / ".venv" / "lib").glob("python3*/site-packages/__editable__*.pth")):
        for line in pth.read_text().splitlines():
            path = Path(line.strip())
            if line.strip() and not line.startswith(("#", "import ")) and path.is_dir() and path.is_relative_to(ctx.root):
                found.append(path)
    return sorted(set(found))


def compile_sources(ctx: Context) -> None:
    """Write the bytecode of every editable source that lacks it or whose source changed, as an
    installed wheel has it. A daemon that compiles modules at its start keeps the compiler's
    memory: at fd447cc, a start without bytecode measured 63152 kB of VmRSS, the next start
    (bytecode written) 59316 kB; the shared tree's bytecode is stale after every edit made with
    ``PYTHONDONTWRITEBYTECODE`` (this workspace's setting), which is why one bench run said
    63.0 MiB where the scripts said 57.9 (bench/reports/2026-12-07-daemon-perf.md)."""
    dirs = [str(d) for d in editable_sources(ctx)]
    if dirs:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        subprocess.run([str(ctx.python), "-m", "compileall", "-q", *dirs], env=env, check=True,
                       stdout=subprocess.DEVNULL, timeout=600)


def default_set_deny(meta: str = "dockyard") -> list[str]:
    """The installed distributions with dockyard entry points that the meta-distribution
    ``meta`` does not install (its requirements without extras, followed through every
    requirement), sorted: ``DOCKYARD_DISABLE_PLUGINS`` set to them makes a daemon of this
    ``.venv`` load what ``pip install dockyard`` would have installed. Read from the metadata,
    so a member added to or removed from the default set needs no change here."""
    import importlib.metadata as md
    import re

    from packaging.requirements import Requirement

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    members: set[str] = set()
    todo = [meta]
    while todo:
        name = todo.pop()
        if norm(name) in members:
            continue
        members.add(norm(name))
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for text in requires:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    if len(members) == 1:
        raise RuntimeError(f"the meta-distribution {meta!r} is not installed: its default set is unknown")
    outside = {dist.metadata["Name"] for dist in md.distributions()
               if any(ep.group.startswith("dockyard.") for ep in dist.entry_points)
               and norm(dist.metadata["Name"]) not in members}
    return sorted(outside)


def start_dockyardd(ctx: Context, root: Path, busybox: bool = True,
                    env: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A dockyardd of the benchmark's own (data, exec root and socket under ``root``, which is
    emptied first) and its host URL; with ``busybox`` the offline busybox image is bootstrapped;
    ``env`` is added to the daemon's environment. The editable sources' bytecode is written
    first (:func:`compile_sources`). RuntimeError when it does not come up, after
    :func:`stop_dockyardd` cleaned it away."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    compile_sources(ctx)
    sock = root / "run" / "dockyard.sock"
    with open(root / "daemon.log", "wb") as log:  # the child keeps its own descriptor
        # bytecode as an installed daemon has it (PYTHONDONTWRITEBYTECODE would have it compile
        # every edited module at each start: slower, and ~3 MiB more RSS from the compiler)
        daemon_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"} | (env or {})
        proc = subprocess.Popen([str(ctx.python), "-m", "dockyard.daemon", "--data-root", str(root / "data"),
                                 "--exec-root", str(root / "run"), "-H", f"unix://{sock}"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=daemon_env)
    host = f"unix://{sock}"
    try:
        wait_for_socket(proc, sock, "dockyardd")
        if busybox:
            made = subprocess.run([str(ctx.venv_bin / "dockyard"), "-H", host, "image", "bootstrap", "busybox"],
                                  capture_output=True, text=True)
            if made.returncode != 0:
                raise RuntimeError(f"image bootstrap busybox: {last_line(made)}")
    except RuntimeError as exc:
        stop_dockyardd(proc, root)
        log_tail = (root / "daemon.log").read_text(errors="replace")[-500:] if (root / "daemon.log").exists() else ""
        raise RuntimeError(f"{exc}: {log_tail}" if log_tail else str(exc)) from None
    return proc, host


def stop_dockyardd(proc: subprocess.Popen[bytes], root: Path) -> None:
    """Stop a daemon of :func:`start_dockyardd`, remove the kernel objects named after it (its
    default bridge and nft table may outlive it, as docker0 does) and its directory."""
    from dockyard.config import Config
    from dockyard_plugin_sdk.testing import purge_owned

    stop_process(proc)
    purge_owned(Config(values={"data-root": str(root / "data")}).owner)
    shutil.rmtree(root, ignore_errors=True)


def hyperfine_prepared(ctx: Context, commands: list[tuple[Result, str, str]], out: Path) -> None:
    """Time ``(result, command, prepare)`` triples in one hyperfine run, each command preceded
    by its own ``--prepare`` step; fills the results, or sets their error when hyperfine fails."""
    argv = [shutil.which("hyperfine") or "hyperfine", "--style", "none", "--shell", "none",
            "--warmup", str(min(ctx.warmup, 1)), "--runs", str(ctx.runs), "--export-json", str(out)]
    for _r, _cmd, prep in commands:
        argv += ["--prepare", prep]
    for r, cmd, _prep in commands:
        argv += ["--command-name", r.name, cmd]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    if res.returncode != 0:
        for r, _cmd, _prep in commands:
            r.error = f"hyperfine failed ({res.returncode}): {res.stderr.strip()[-300:]}"
        return
    data = json.loads(out.read_text())["results"]
    for (r, _cmd, _prep), stats in zip(commands, data, strict=True):
        fill(r, stats)


def check_command(argv: list[str], timeout: float = 30) -> str:
    """Why ``argv`` cannot be benchmarked ("" when it runs and exits 0)."""
    exe = argv[0]
    if "/" in exe:
        if not Path(exe).exists():
            return f"{exe} does not exist"
    elif shutil.which(exe) is None:
        return f"{exe} is not installed"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{' '.join(argv)} cannot run: {exc}"
    if proc.returncode != 0:
        return f"{' '.join(argv)} exits {proc.returncode}: {last_line(proc)}"
    return ""


def hyperfine(ctx: Context, commands: dict[str, list[str]], tag: str) -> dict[str, dict[str, Any]]:
    """Run every command in one hyperfine invocation; returns hyperfine's JSON result per name.

    When that fails (a command exited non-zero in some run), each command is measured in a run
    of its own so the others still get figures; a command that fails alone maps to
    ``{"error": why}``.
    """
    hf = shutil.which("hyperfine")
    if hf is None:
        raise RuntimeError("hyperfine is not installed (apt-get install hyperfine, or setup-peers.sh)")

    def invoke(cmds: dict[str, list[str]], out: Path) -> tuple[dict[str, dict[str, Any]], str]:
        argv = [hf, "--style", "none", "--shell", "none", "--warmup", str(ctx.warmup), "--runs", str(ctx.runs),
                "--export-json", str(out)]
        for name, cmd in cmds.items():
            argv += ["--command-name", name, " ".join(cmd)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            return {}, f"hyperfine failed ({proc.returncode}): {proc.stderr.strip()}"
        data = json.loads(out.read_text())
        return dict(zip(cmds, data["results"], strict=True)), ""

    results, error = invoke(commands, ctx.work_dir / f"hyperfine-{tag}.json")
    if not error:
        return results
    if len(commands) == 1:
        name = next(iter(commands))
        return {name: {"error": f"{error} ({check_command(commands[name]) or 'intermittent failure'})"}}
    ctx.log(f"  one hyperfine run for all failed ({error}); measuring each command alone")
    for i, (name, cmd) in enumerate(commands.items()):
        alone, why = invoke({name: cmd}, ctx.work_dir / f"hyperfine-{tag}-{i}.json")
        results[name] = alone[name] if not why else {
            "error": f"{why} ({check_command(cmd) or 'intermittent failure'})"}
    return results


def fill(result: Result, stats: dict[str, Any]) -> Result:
    """Copy hyperfine's figures (seconds) into ``result`` (milliseconds)."""
    ms = 1000.0
    result.median_ms = stats["median"] * ms
    result.mean_ms = stats["mean"] * ms
    result.stddev_ms = (stats.get("stddev") or 0.0) * ms
    result.min_ms = stats["min"] * ms
    result.max_ms = stats["max"] * ms
    result.runs = len(stats.get("times") or [])
    return result


def add_ratios(results: list[Result]) -> None:
    """Give every measured subject its ratio to every measured peer of the same benchmark."""
    for subject in results:
        if subject.role != "subject" or not subject.measured:
            continue
        for peer in results:
            if peer.role == "peer" and peer.benchmark == subject.benchmark and peer.measured and peer.median_ms:
                subject.ratios[peer.name] = subject.median_ms / peer.median_ms  # type: ignore[operator]


# ---------------------------------------------------------------------------------- reports
def _fmt(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def host_facts() -> dict[str, Any]:
    uname = platform.uname()
    hf = shutil.which("hyperfine")
    version = subprocess.run([hf, "--version"], capture_output=True, text=True).stdout.strip() if hf else ""
    try:
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    except OSError:
        commit = ""
    cpus = len([line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("processor")]) \
        if Path("/proc/cpuinfo").exists() else 0
    return {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "host": uname.node,
            "kernel": uname.release, "machine": uname.machine, "cpus": cpus,
            "python": platform.python_version(), "hyperfine": version, "commit": commit}


def write_reports(results: list[Result], report_dir: Path, meta: dict[str, Any]) -> tuple[Path, Path]:
    report_dir.mkdir(parents=True, exist_ok=True)
    js = report_dir / "latest.json"
    md = report_dir / "latest.md"
    js.write_text(json.dumps({"meta": meta, "results": [asdict(r) for r in results]}, indent=2) + "\n")
    md.write_text(render_markdown(results, meta))
    return md, js


def render_markdown(results: list[Result], meta: dict[str, Any]) -> str:
    lines = ["# Dockyard benchmarks", "",
             f"{meta.get('date', '')} · commit {meta.get('commit') or '?'} · {meta.get('cpus', '?')} CPUs · "
             f"kernel {meta.get('kernel', '?')} · Python {meta.get('python', '?')} · {meta.get('hyperfine') or ''}",
             "", "Medians of repeated runs (hyperfine); ratios are against peers measured in the same run.", ""]
    if meta.get("setup"):
        lines += [f"Peers setup: {meta['setup']}", ""]
    benchmarks: dict[str, list[Result]] = {}
    for r in results:
        benchmarks.setdefault(r.benchmark, []).append(r)
    for bench, rows in benchmarks.items():
        peers = [r.name for r in rows if r.role == "peer"]
        lines += [f"## {bench}", ""]
        header = ["command", "role", "median ms", "mean ± sd ms", "min ms", "max ms", "runs"]
        header += [f"× {p}" for p in peers]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for r in rows:
            if r.measured:
                cells = [f"`{r.name}`", r.role, _fmt(r.median_ms), f"{_fmt(r.mean_ms)} ± {_fmt(r.stddev_ms)}",
                         _fmt(r.min_ms), _fmt(r.max_ms), str(r.runs)]
                cells += [_fmt(r.ratios.get(p), 2) if p in r.ratios else "—" for p in peers]
            else:
                cells = [f"`{r.name}`", r.role, "NOT MEASURED", "—", "—", "—", "0"] + ["—"] * len(peers)
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for r in rows:
            if not r.measured:
                lines.append(f"- **`{r.name}` not measured:** {r.error}")
        goals = [(r, g) for r in rows for g in r.goals]
        if goals:
            lines += ["", "Goals:", ""]
            for _r, g in goals:
                mark = {True: "met", False: "MISSED", None: "not checked"}[g.met]
                lines.append(f"- {g.text}: **{mark}**" + (f" ({g.detail})" if g.detail else ""))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
