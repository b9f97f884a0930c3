"""Container start-up: ``docker run --rm busybox true`` through the docker CLI against dockyardd,
against podman's Docker-compatible API service, ``podman run --rm --network none busybox true``,
``dockyard run --rm busybox true``, and ``crun run`` of a busybox bundle (the floor). All in one
hyperfine invocation. Then memory per idle container: N ``sleep`` containers on each engine,
the RSS of their monitors (conmon) plus the daemon's growth, against podman's conmons.

Goals (issue 5): docker CLI → dockyardd ≤ 0.5× docker CLI → podman; per idle container ≤ 3 MiB.
Goals (issue 21): ``dockyard run`` (our CLI) ≤ 0.5× ``podman run --network none``; dockyardd's RSS
after its start and one container ≤ 50 MiB (dockerd plus containerd use about 132), measured for
the default set (what ``pip install dockyard`` installs: every other distribution of the ``.venv``
disabled, the list read from the meta-distribution's metadata) and for every distribution of the
``.venv``, each in a daemon of its own, beside podman's API service after one container.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from harness import (
    Context,
    Goal,
    Result,
    add_ratios,
    check_command,
    default_set_deny,
    fill,
    start_dockyardd,
    stop_dockyardd,
)

NAME = "run_rm"
MAX_RATIO = 0.5
MAX_IDLE_MIB = 3.0
MAX_CLI_RATIO = 0.5
MAX_DAEMON_MIB = 50.0
IDLE_N = int(os.environ.get("BENCH_IDLE_N", "30"))
RUN_TIMEOUT = 120  # seconds for the one `run --rm` before an RSS reading (a hung run fails, not the bench)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_kib(pid: int) -> int:
    """VmRSS of ``pid`` and of its descendants (a Go service may run helper children)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss_kib(p)
        todo.extend(children.get(p, []))
    return total


def daemon_rss_after_one_run(docker: str, host: str, pid: int) -> float:
    """The issue's figure: VmRSS (MiB) of a started daemon after one ``run --rm busybox true``
    through it, read 0.5 s after the run returned (its exit and removal settled)."""
    subprocess.run([docker, "-H", host, "run", "--rm", "busybox", "true"], capture_output=True, check=True,
                   timeout=RUN_TIMEOUT)
    time.sleep(0.5)
    return rss_kib(pid) / 1024


def default_set_rss(ctx: Context, docker: str, root: Path) -> float:
    """:func:`daemon_rss_after_one_run` of a daemon that loads the default set only."""
    proc, host = start_dockyardd(ctx, root, env={"DOCKYARD_DISABLE_PLUGINS": ",".join(default_set_deny())})
    try:
        return daemon_rss_after_one_run(docker, host, proc.pid)
    finally:
        stop_dockyardd(proc, root)


def conmon_pids(needle: str) -> list[int]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            argv0 = cmd.split(b"\0", 1)[0]
            if argv0.endswith(b"conmon") and needle.encode() in cmd:
                out.append(int(pid))
    return out


def make_bundle(work: Path) -> Path:
    """A crun bundle: busybox-static as /bin/true, the default spec running ``true``."""
    bundle = work / "bundle"
    if (bundle / "config.json").exists():
        return bundle
    rootfs = bundle / "rootfs"
    (rootfs / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in ("true", "sh"):
        link = rootfs / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    subprocess.run(["crun", "spec"], cwd=bundle, check=True, capture_output=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["args"] = ["/bin/true"]
    spec["process"]["terminal"] = False
    (bundle / "config.json").write_text(json.dumps(spec))
    return bundle


def start_podman_service(sock: Path) -> subprocess.Popen[bytes]:
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    for _ in range(200):
        if sock.exists():
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("podman system service did not come up")


def podman_service_rss(docker: str, sock: Path, pid: int) -> float | None:
    """The peer's figure: podman's API service (and any child) after one ``run --rm`` through it,
    as :func:`daemon_rss_after_one_run` reads ours; None when the run fails."""
    try:
        done = subprocess.run([docker, "-H", f"unix://{sock}", "run", "--rm", "busybox", "true"], capture_output=True,
                              timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        return None
    time.sleep(0.5)
    return tree_rss_kib(pid) / 1024


def idle_memory(ctx: Context, docker: str, host: str, daemon_pid: int, root: Path) -> tuple[float, float, float]:
    """(conmon MiB per container, daemon growth MiB per container, total MiB per container)."""
    before = rss_kib(daemon_pid)
    names = [f"idle{i}" for i in range(IDLE_N)]
    for n in names:
        subprocess.run([docker, "-H", host, "run", "-d", "--name", n, "busybox", "sleep", "3600"],
                       check=True, capture_output=True)
    time.sleep(1.0)
    after = rss_kib(daemon_pid)
    mons = conmon_pids(str(root))
    conmon = sum(rss_kib(p) for p in mons) / 1024 / max(len(mons), 1)
    growth = max(after - before, 0) / 1024 / IDLE_N
    subprocess.run([docker, "-H", host, "rm", "-f", *names], capture_output=True)
    return conmon, growth, conmon + growth


def podman_idle_memory() -> float:
    ids = []
    for _ in range(IDLE_N):
        res = subprocess.run(["podman", "run", "-d", "--network", "none", "busybox", "sleep", "3600"],
                             capture_output=True, text=True)
        if res.returncode == 0:
            ids.append(res.stdout.strip())
    time.sleep(1.0)
    total = 0
    for cid in ids:
        total += sum(rss_kib(p) for p in conmon_pids(cid))
    subprocess.run(["podman", "rm", "-f", "-t", "0", *ids], capture_output=True)
    return total / 1024 / max(len(ids), 1)


def run(ctx: Context) -> list[Result]:
    work = ctx.work_dir / "dockyard-bench-run-rm"
    work.mkdir(parents=True, exist_ok=True)
    docker = shutil.which("docker") or "docker"
    dockyard = str(ctx.venv_bin / "dockyard")
    podman_sock = Path("/run/dockyard-bench-podman.sock")
    subjects = {
        "docker run → dockyardd": Result(benchmark=NAME, name="docker run → dockyardd", command=""),
        "dockyard run → dockyardd": Result(benchmark=NAME, name="dockyard run → dockyardd", command=""),
    }
    peers = {
        "docker run → podman API": Result(benchmark=NAME, name="docker run → podman API", role="peer",
                                          command=f"{docker} -H unix://{podman_sock} run --rm busybox true"),
        "podman run --network none": Result(benchmark=NAME, name="podman run --network none", role="peer",
                                            command="podman run --rm --network none busybox true"),
        "crun run (floor)": Result(benchmark=NAME, name="crun run (floor)", role="peer", command=""),
    }
    results = [*subjects.values(), *peers.values()]
    if shutil.which("hyperfine") is None:
        for r in results:
            r.error = "hyperfine is not installed"
        return results
    for r, argv in ((peers["docker run → podman API"], ["podman", "--version"]),
                    (peers["podman run --network none"], ["podman", "image", "exists", "busybox"]),
                    (peers["crun run (floor)"], ["crun", "--version"]),
                    (subjects["docker run → dockyardd"], [docker, "--version"])):
        r.error = check_command(argv)
    proc = podman = None
    memory: dict[str, float] = {}
    try:
        try:
            memory["default"] = default_set_rss(ctx, docker, work / "daemon-default")
            ctx.log(f"  dockyardd RSS after its start and one container, default set: {memory['default']:.1f} MiB")
        except (RuntimeError, subprocess.SubprocessError) as exc:
            ctx.log(f"  dockyardd RSS, default set: not measured: {exc}")
        try:
            proc, host = start_dockyardd(ctx, work / "daemon")
        except RuntimeError as exc:
            for r in subjects.values():
                r.error = f"dockyardd: {exc}"
        if proc is not None:
            try:
                memory["daemon"] = daemon_rss_after_one_run(docker, host, proc.pid)
                ctx.log(f"  dockyardd RSS after its start and one container, every distribution: "
                        f"{memory['daemon']:.1f} MiB")
            except subprocess.SubprocessError as exc:
                ctx.log(f"  dockyardd RSS, every distribution: not measured: {exc}")
            subjects["docker run → dockyardd"].command = f"{docker} -H {host} run --rm busybox true"
            subjects["dockyard run → dockyardd"].command = f"{dockyard} -H {host} run --rm busybox true"
        if not peers["docker run → podman API"].error:
            try:
                podman = start_podman_service(podman_sock)
                memory["podman service"] = podman_service_rss(docker, podman_sock, podman.pid)
                ctx.log(f"  podman system service RSS after one container: {memory['podman service']:.1f} MiB")
            except RuntimeError as exc:
                peers["docker run → podman API"].error = str(exc)
        if not peers["crun run (floor)"].error:
            bundle = make_bundle(work)
            peers["crun run (floor)"].command = f"crun run --bundle {bundle} dockyard-bench-floor"
        commands = {r.name: r.command for r in results if not r.error and r.command}
        out = work / "hyperfine.json"
        argv = ["hyperfine", "--style", "none", "--shell", "none", "--warmup", str(ctx.warmup),
                "--runs", str(ctx.runs), "--export-json", str(out)]
        for name, cmd in commands.items():
            argv += ["--command-name", name, cmd]
        # bytecode as an installed wheel has it: with PYTHONDONTWRITEBYTECODE (this workspace's
        # setting) every edited module of our CLI would be compiled again on each run
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        res = subprocess.run(argv, capture_output=True, text=True, timeout=3600, env=env)
        if res.returncode != 0:
            for r in results:
                if r.name in commands:
                    r.error = f"hyperfine failed ({res.returncode}): {res.stderr.strip()[-300:]}"
        else:
            for (name, _cmd), stats in zip(commands.items(), json.loads(out.read_text())["results"], strict=True):
                fill(next(r for r in results if r.name == name), stats)
        if proc is not None:
            conmon, growth, total = idle_memory(ctx, docker, host, proc.pid, work / "daemon")
            memory.update(conmon=conmon, growth=growth, total=total)
            ctx.log(f"  dockyard idle container: conmon {conmon:.2f} MiB + daemon growth {growth:.2f} MiB")
        if shutil.which("podman"):
            memory["podman"] = podman_idle_memory()
            ctx.log(f"  podman idle container: conmon {memory['podman']:.2f} MiB")
    finally:
        if podman is not None:
            os.killpg(podman.pid, signal.SIGTERM)
            try:
                podman.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(podman.pid, signal.SIGKILL)
                podman.wait()
            podman_sock.unlink(missing_ok=True)
        if proc is not None:
            stop_dockyardd(proc, work / "daemon")
    add_ratios(results)
    sub = subjects["docker run → dockyardd"]
    ratio = sub.ratios.get("docker run → podman API")
    sub.goals.append(Goal(f"docker CLI → dockyardd ≤ {MAX_RATIO}× docker CLI → podman API",
                          None if ratio is None else ratio <= MAX_RATIO, "" if ratio is None else f"{ratio:.2f}×"))
    ours = subjects["dockyard run → dockyardd"]
    ratio = ours.ratios.get("podman run --network none")
    ours.goals.append(Goal(f"dockyard run → dockyardd ≤ {MAX_CLI_RATIO}× podman run --network none",
                           None if ratio is None else ratio <= MAX_CLI_RATIO, "" if ratio is None else f"{ratio:.2f}×"))
    peer_rss = (f"; podman system service after one container: {memory['podman service']:.1f} MiB"
                if memory.get("podman service") is not None else "")
    peer_rss += "; dockerd + containerd: " + ("not measured" if shutil.which("dockerd") else "not installed")
    for key, label in (("default", "default set (`pip install dockyard`)"),
                       ("daemon", "every distribution of the .venv")):
        text = f"dockyardd RSS after its start and one container ≤ {MAX_DAEMON_MIB:.0f} MiB, {label}"
        if memory.get(key) is not None:
            ours.goals.append(Goal(text, memory[key] <= MAX_DAEMON_MIB, f"{memory[key]:.1f} MiB{peer_rss}"))
        else:
            ours.goals.append(Goal(text, None, "not measured"))
    if memory.get("total") is not None:
        detail = (f"{memory['total']:.2f} MiB = conmon {memory['conmon']:.2f} + daemon growth "
                  f"{memory['growth']:.2f}, {IDLE_N} `sleep` containers")
        if "podman" in memory:
            detail += f"; podman's conmon {memory['podman']:.2f} MiB"
        sub.goals.append(Goal(f"memory per idle container ≤ {MAX_IDLE_MIB:.0f} MiB", memory["total"] <= MAX_IDLE_MIB,
                              detail))
    else:
        sub.goals.append(Goal(f"memory per idle container ≤ {MAX_IDLE_MIB:.0f} MiB", None, "not measured"))
    return results
