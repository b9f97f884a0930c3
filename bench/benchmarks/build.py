"""Image builds: the same Dockerfile (ENV, WORKDIR, a COPY of 20 files, two RUN steps, LABEL, CMD)
built by ``docker build`` (classic builder) against dockyardd, by ``dockyard build``, and by
``podman build``, cached (every step reused: the second build of an unchanged context) and
uncached (``--no-cache``), all in the same run.

Goal (issue 7): cached and uncached build ≤ 1.0× podman build's time.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from harness import Context, Goal, Result, add_ratios, check_command, fill, start_dockyardd, stop_dockyardd

NAME_CACHED = "build_cached"
NAME_UNCACHED = "build_uncached"
MAX_RATIO = 1.0
#: Uncached builds take seconds each: fewer runs than the harness default.
UNCACHED_RUNS = int(os.environ.get("BENCH_BUILD_UNCACHED_RUNS", "10"))
LABEL = "dockyard.bench=build"

DOCKERFILE = f"""FROM busybox
ENV APP=/app MODE=bench
WORKDIR /app
COPY src/ ./src/
RUN mkdir -p out && for i in 1 2 3 4 5; do cp -r src out/copy$i; done
RUN echo "built $MODE" > out/info.txt
LABEL {LABEL}
CMD ["cat", "/app/out/info.txt"]
"""


def make_context(work: Path) -> Path:
    ctx = work / "context"
    (ctx / "src").mkdir(parents=True, exist_ok=True)
    (ctx / "Dockerfile").write_text(DOCKERFILE)
    for i in range(20):  # deterministic content: the same context every run
        (ctx / "src" / f"f{i:02d}.bin").write_bytes(bytes((i * 7 + j) % 251 for j in range(20_000)))
    return ctx


def _hyperfine(ctx: Context, commands: dict[str, str], runs: int, warmup: int, out: Path) -> dict[str, dict]:
    argv = ["hyperfine", "--style", "none", "--shell", "none", "--warmup", str(warmup), "--runs", str(runs),
            "--export-json", str(out)]
    for name, cmd in commands.items():
        argv += ["--command-name", name, cmd]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    if res.returncode != 0:
        return {name: {"error": f"hyperfine failed ({res.returncode}): {res.stderr.strip()[-300:]}"}
                for name in commands}
    return dict(zip(commands, json.loads(out.read_text())["results"], strict=True))


def run(ctx: Context) -> list[Result]:
    work = ctx.work_dir / "dockyard-bench-build"
    work.mkdir(parents=True, exist_ok=True)
    context = make_context(work)
    docker = shutil.which("docker") or "docker"
    dockyard = str(ctx.venv_bin / "dockyard")
    results: list[Result] = []
    subjects: dict[str, Result] = {}
    peers: dict[str, Result] = {}
    for bench, flag in ((NAME_CACHED, ""), (NAME_UNCACHED, " --no-cache")):
        suffix = "cached" if bench == NAME_CACHED else "no-cache"
        subjects[f"docker build → dockyardd ({suffix})"] = Result(
            benchmark=bench, name=f"docker build → dockyardd ({suffix})", command="")
        subjects[f"dockyard build ({suffix})"] = Result(benchmark=bench, name=f"dockyard build ({suffix})", command="")
        peers[f"podman build ({suffix})"] = Result(
            benchmark=bench, name=f"podman build ({suffix})", role="peer",
            command=f"podman build -q{flag} -t dockyard-bench-build {context}")
    results = [*subjects.values(), *peers.values()]
    if shutil.which("hyperfine") is None:
        for r in results:
            r.error = "hyperfine is not installed"
        return results
    why_docker = check_command([docker, "--version"])
    why_podman = check_command(["podman", "image", "exists", "docker.io/library/busybox:latest"])
    for r in results:
        if r.role == "peer" and why_podman:
            r.error = why_podman
        elif r.name.startswith("docker build") and why_docker:
            r.error = why_docker
    proc = None
    try:
        try:
            proc, host = start_dockyardd(ctx, work / "daemon")
        except RuntimeError as exc:
            for r in subjects.values():
                r.error = f"dockyardd: {exc}"
        if proc is not None:
            for r in subjects.values():
                flag = " --no-cache" if r.benchmark == NAME_UNCACHED else ""
                if r.name.startswith("docker build"):
                    r.command = f"env DOCKER_BUILDKIT=0 {docker} -H {host} build -q{flag} -t dockyard-bench-build {context}"
                else:
                    r.command = f"{dockyard} -H {host} build -q{flag} -t dockyard-bench-build {context}"
        # Fill every cache once, and check each command works before timing it.
        for r in results:
            if r.error or not r.command:
                continue
            warm = subprocess.run(r.command.split(), capture_output=True, text=True, timeout=600)
            if warm.returncode != 0:
                r.error = f"exits {warm.returncode}: {(warm.stderr.strip() or warm.stdout.strip())[-300:]}"
        for bench, runs, warmup in ((NAME_CACHED, ctx.runs, ctx.warmup), (NAME_UNCACHED, min(ctx.runs, UNCACHED_RUNS), 1)):
            commands = {r.name: r.command for r in results if r.benchmark == bench and not r.error and r.command}
            if not commands:
                continue
            ctx.log(f"  {bench}: {len(commands)} commands, {runs} runs each")
            stats = _hyperfine(ctx, commands, runs, warmup, work / f"hyperfine-{bench}.json")
            for name, st in stats.items():
                r = next(x for x in results if x.name == name)
                if "error" in st:
                    r.error = st["error"]
                else:
                    fill(r, st)
    finally:
        if proc is not None:
            stop_dockyardd(proc, work / "daemon")
        if shutil.which("podman"):
            subprocess.run(["podman", "rmi", "-f", "dockyard-bench-build"], capture_output=True)
            subprocess.run(["podman", "image", "prune", "-f", "--filter", f"label={LABEL}"], capture_output=True)
    add_ratios(results)
    for r in subjects.values():
        if not r.name.startswith("docker build"):
            continue
        suffix = "cached" if r.benchmark == NAME_CACHED else "no-cache"
        ratio = r.ratios.get(f"podman build ({suffix})")
        r.goals.append(Goal(f"{suffix} build ≤ {MAX_RATIO}× podman build", None if ratio is None else ratio <= MAX_RATIO,
                            "" if ratio is None else f"{ratio:.2f}×"))
    return results
