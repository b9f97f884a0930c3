"""Compose: ``up -d`` and ``down`` of a 10-service project, ``dockyard compose`` against a
dockyardd of our own, and docker-compose v1 (1.29.2) against a podman API service of our own
(``podman system service`` on a socket in the work directory).

Each service is busybox running ``sh -c "trap 'exit 0' TERM; while true; do sleep 0.2; done"``
with ``stop_grace_period: 2s``, so a stop costs what the engine and client add to a prompt exit.
Rounds are interleaved: each round brings one fresh project (``dycbench<random>``) up and down
with each client, the order alternating; ``ctx.warmup`` rounds are not recorded (at most 1), and
at most ``BENCH_COMPOSE_RUNS`` (default 10) are. Times are wall clock around the process, like
hyperfine's ``--shell none``. Both clients run with ``PYTHONDONTWRITEBYTECODE`` removed from
their environment: docker-compose v1's venv ships compiled bytecode, and the editable dockyard
checkout gets it on the first (warm-up) run instead of recompiling on every run. Both print
their usual progress (to a pipe, as in CI logs).

Goals (issue 8): ``up -d`` and ``down`` each ≤ 0.3× docker-compose v1 → podman. Every container
and network of the benchmark's projects is removed afterwards, on both engines.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import time
from pathlib import Path

from harness import (
    Context,
    Goal,
    Result,
    add_ratios,
    check_command,
    fill,
    last_line,
    sample_stats,
    start_dockyardd,
    stop_dockyardd,
    stop_process,
    wait_for_socket,
)

UP = "compose_up"
DOWN = "compose_down"
SERVICES = 10
MAX_RATIO = 0.3
RUNS = int(os.environ.get("BENCH_COMPOSE_RUNS", "10"))
COMPOSE_V1 = os.environ.get("BENCH_COMPOSE_V1", "/var/cache/dockyard-test/compose-v1-venv/bin/docker-compose")

SERVICE = """  s{i}:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
    stop_grace_period: 2s
"""


def project_file(n: int = SERVICES) -> str:
    return "services:\n" + "".join(SERVICE.format(i=i) for i in range(n))


def start_podman_service(sock: Path) -> subprocess.Popen[bytes]:
    """``podman system service`` on ``sock`` (its own process group; stop it with stop_podman_service)."""
    sock.unlink(missing_ok=True)
    proc = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    wait_for_socket(proc, sock, "podman system service")
    return proc


def stop_podman_service(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc)


def remove_podman_projects(names: list[str]) -> None:
    """Containers and networks of the benchmark's projects that a failed ``down`` left in podman."""
    for name in names:
        ids = subprocess.run(["podman", "ps", "-aq", "--filter", f"label=com.docker.compose.project={name}"],
                             capture_output=True, text=True).stdout.split()
        if ids:
            subprocess.run(["podman", "rm", "-f", "-t", "0", *ids], capture_output=True)
        subprocess.run(["podman", "network", "rm", "-f", f"{name}_default"], capture_output=True)


class Client:
    """One client/engine pair: how to call it and its up/down times."""

    def __init__(self, up: Result, down: Result, argv: list[str], host: str) -> None:
        self.up, self.down, self.argv, self.host = up, down, argv, host
        self.up_times: list[float] = []
        self.down_times: list[float] = []
        self.error = ""
        self.leftovers: list[str] = []  # projects whose down failed

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if k not in ("DOCKYARD_HOST", "DOCKER_HOST", "PYTHONDONTWRITEBYTECODE", "COMPOSE_PROJECT_NAME")}
        env["DOCKER_HOST"] = self.host
        return env

    def _timed(self, args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
        t0 = time.perf_counter()
        proc = subprocess.run([*self.argv, *args], cwd=cwd, env=self.env(), capture_output=True, text=True,
                              timeout=300)
        return time.perf_counter() - t0, proc

    def round(self, work: Path, record: bool) -> None:
        name = f"dycbench{secrets.token_hex(3)}"
        d = work / name
        d.mkdir()
        (d / "compose.yaml").write_text(project_file())
        try:
            up_s, up = self._timed(["-p", name, "up", "-d"], d)
        finally:
            down_s, down = self._timed(["-p", name, "down", "-v"], d)
            if down.returncode != 0:
                self.leftovers.append(name)
            shutil.rmtree(d, ignore_errors=True)
        for what, proc in (("up -d", up), ("down", down)):
            if proc.returncode != 0 and not self.error:
                self.error = f"{what} exits {proc.returncode}: {last_line(proc)}"
        if record and not self.error:
            self.up_times.append(up_s)
            self.down_times.append(down_s)

    def clean_up(self, work: Path) -> None:
        """One more ``down`` of every project whose ``down`` failed (errors ignored)."""
        for name in self.leftovers:
            d = work / name
            d.mkdir(exist_ok=True)
            (d / "compose.yaml").write_text(project_file())
            subprocess.run([*self.argv, "-p", name, "down", "-v", "-t", "0"], cwd=d, env=self.env(),
                           capture_output=True, timeout=300)

    def finish(self) -> None:
        for r, times in ((self.up, self.up_times), (self.down, self.down_times)):
            if self.error:
                r.error = self.error
            elif times:
                fill(r, sample_stats(times))


def run(ctx: Context) -> list[Result]:
    work = ctx.work_dir / "dockyard-bench-compose"
    work.mkdir(parents=True, exist_ok=True)
    dockyard = str(ctx.venv_bin / "dockyard")
    dy_up = Result(benchmark=UP, name="dockyard compose up -d → dockyardd", command="")
    dy_down = Result(benchmark=DOWN, name="dockyard compose down → dockyardd", command="")
    v1_up = Result(benchmark=UP, name="docker-compose v1 up -d → podman", role="peer", command="")
    v1_down = Result(benchmark=DOWN, name="docker-compose v1 down → podman", role="peer", command="")
    results = [dy_up, v1_up, dy_down, v1_down]

    dy_error = check_command([dockyard, "compose", "--help"])
    v1_error = check_command([COMPOSE_V1, "version"])
    if v1_error:
        v1_error = f"docker-compose v1 is missing ({v1_error}; set BENCH_COMPOSE_V1 to its path)"
    elif check_command(["podman", "image", "exists", "busybox"]):
        v1_error = ("podman or its busybox image is missing "
                    f"({check_command(['podman', 'image', 'exists', 'busybox'])}): bash ../shared/peers/setup-peers.sh")
    daemon = podman = None
    clients: list[Client] = []
    try:
        if not dy_error:
            try:
                daemon, host = start_dockyardd(ctx, work / "daemon")
                clients.append(Client(dy_up, dy_down, [dockyard, "compose"], host))
            except RuntimeError as exc:
                dy_error = f"dockyardd: {exc}"
        if not v1_error:
            try:
                sock = work / "podman.sock"
                podman = start_podman_service(sock)
                clients.append(Client(v1_up, v1_down, [COMPOSE_V1], f"unix://{sock}"))
            except (RuntimeError, OSError) as exc:
                v1_error = f"podman API service: {exc}"
        for c in clients:
            c.up.command = f"DOCKER_HOST={c.host} {' '.join(c.argv)} -p dycbenchNNNNNN up -d"
            c.down.command = f"DOCKER_HOST={c.host} {' '.join(c.argv)} -p dycbenchNNNNNN down -v"
        warmup, runs = min(ctx.warmup, 1), min(ctx.runs, RUNS)
        for rnd in range(warmup + runs):
            order = clients if rnd % 2 == 0 else clients[::-1]
            for c in order:
                if not c.error:
                    ctx.log(f"  round {rnd + 1}/{warmup + runs}: {c.up.name.split(' up')[0]}")
                    c.round(work, rnd >= warmup)
        for c in clients:
            c.finish()
    finally:
        for c in clients:
            c.clean_up(work)
        if podman is not None:
            stop_podman_service(podman)
            remove_podman_projects([n for c in clients if c.up is v1_up for n in c.leftovers])
        if daemon is not None:
            stop_dockyardd(daemon, work / "daemon")
        shutil.rmtree(work, ignore_errors=True)
    for r in (dy_up, dy_down):
        r.error = r.error or dy_error
    for r in (v1_up, v1_down):
        r.error = r.error or v1_error
    add_ratios([dy_up, v1_up])
    add_ratios([dy_down, v1_down])
    for subject, peer, what in ((dy_up, v1_up, "up -d"), (dy_down, v1_down, "down")):
        ratio = subject.ratios.get(peer.name)
        why = "" if ratio is not None else f"not measured: {subject.error or peer.error}"
        subject.goals = [Goal(f"`{what}` of {SERVICES} services ≤ {MAX_RATIO}× docker-compose v1 → podman",
                              None if ratio is None else ratio <= MAX_RATIO,
                              f"{ratio:.2f}×" if ratio is not None else why)]
    return results
