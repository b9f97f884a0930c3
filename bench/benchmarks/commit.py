"""Commit of a 100 MB change: ``docker commit`` (the real docker CLI) against dockyardd vs
``podman commit`` of an equivalent container, in one hyperfine invocation.

Each engine gets one exited container that wrote 100 MB of incompressible data
(``dd if=/dev/urandom of=/big bs=1M count=100``, generated once, ``--network none``). Only the
commit is timed: before every run a ``--prepare`` step removes the image the previous run
committed (on dockyardd that also drops its layer blob; only the benchmark's own tag on the shared
podman) and ``sync``s, so each run diffs, tars, digests and stores the whole 100 MB layer and
no run pays for the previous run's dirty pages. The daemon gets its own data root in the work
directory; everything created is removed afterwards.

Goal (issue 4): dockyard's commit ≤ 1.0× podman's.
"""

from __future__ import annotations

import os
import shutil
import subprocess

from harness import (
    Context,
    Goal,
    Result,
    add_ratios,
    check_command,
    hyperfine_prepared,
    last_line,
    start_dockyardd,
    stop_dockyardd,
)

NAME = "commit"
MAX_RATIO = 1.0
SIZE_MB = 100
WRITE = ["dd", "if=/dev/urandom", "of=/big", "bs=1M", f"count={SIZE_MB}"]


def _image_size(argv: list[str]) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True)
    try:
        return f"{int(proc.stdout.strip()) / 1e6:.0f} MB"
    except ValueError:
        return "?"


def run(ctx: Context) -> list[Result]:
    work = ctx.work_dir / "dockyard-bench-commit"
    work.mkdir(parents=True, exist_ok=True)
    docker = shutil.which("docker") or "docker"
    tag = f"dockyard-bench/commit:{os.getpid()}"
    container = f"dockyard-bench-commit-{os.getpid()}"
    podman_tag = f"localhost/{tag}"
    subject = Result(benchmark=NAME, name="docker commit → dockyardd", command="")
    peer = Result(benchmark=NAME, name="podman commit", role="peer",
                  command=f"podman commit -q {container} {podman_tag}")
    results = [subject, peer]
    subject.error = check_command([docker, "--version"])
    peer.error = check_command(["podman", "image", "exists", "busybox"])
    if peer.error:
        peer.error += " (podman or its busybox image is missing: bash ../shared/peers/setup-peers.sh)"
    if shutil.which("hyperfine") is None:
        subject.error = peer.error = "hyperfine is not installed"
        return results
    proc = None
    podman_made = False
    try:
        commands: list[tuple[Result, str, str]] = []
        if not subject.error:
            try:
                proc, host = start_dockyardd(ctx, work / "daemon")
                made = subprocess.run([docker, "-H", host, "run", "--name", container, "--network", "none",
                                       "busybox", *WRITE], capture_output=True, text=True, timeout=300)
                if made.returncode != 0:
                    raise RuntimeError(f"writing {SIZE_MB} MB in a container failed: {last_line(made)}")
            except RuntimeError as exc:
                subject.error = f"dockyardd: {exc}"
            else:
                subject.command = f"{docker} -H {host} commit {container} {tag}"
                commands.append((subject, subject.command,
                                 f"sh -c '{docker} -H {host} rmi -f {tag} >/dev/null 2>&1; sync'"))
        if not peer.error:
            subprocess.run(["podman", "rm", "-f", container], capture_output=True)
            made = subprocess.run(["podman", "run", "--name", container, "--network", "none", "busybox", *WRITE],
                                  capture_output=True, text=True, timeout=300)
            podman_made = True
            if made.returncode != 0:
                peer.error = f"podman: writing {SIZE_MB} MB in a container failed: {last_line(made)}"
            else:
                commands.append((peer, peer.command,
                                 f"sh -c 'podman rmi -f {podman_tag} >/dev/null 2>&1; sync'"))
        if commands:
            hyperfine_prepared(ctx, commands, work / "hyperfine.json")
            # What the last run committed: the image should carry the whole change.
            if subject.measured:
                size = _image_size([docker, "-H", host, "image", "inspect", "-f", "{{.Size}}", tag])
                ctx.log(f"  dockyardd committed image: {size}")
            if peer.measured:
                size = _image_size(["podman", "image", "inspect", "-f", "{{.Size}}", podman_tag])
                ctx.log(f"  podman committed image: {size}")
    finally:
        if podman_made:
            subprocess.run(["podman", "rm", "-f", container], capture_output=True)
            subprocess.run(["podman", "rmi", "-f", podman_tag], capture_output=True)
        if proc is not None:
            if proc.poll() is None:
                subprocess.run([docker, "-H", host, "rm", "-f", container], capture_output=True)
                subprocess.run([docker, "-H", host, "rmi", "-f", tag], capture_output=True)
            stop_dockyardd(proc, work / "daemon")
    add_ratios(results)
    ratio = subject.ratios.get(peer.name)
    subject.goals = [Goal(f"commit of a {SIZE_MB} MB change ≤ {MAX_RATIO:.1f}× `podman commit`",
                          None if ratio is None else ratio <= MAX_RATIO,
                          "" if ratio is None else f"{ratio:.2f}×")]
    return results
