#!/usr/bin/env python3
"""Time ``up -d`` and ``down`` of an N-service project, in the same run, and report ratios.

Each measured pair is (client, engine): ``dockyard compose`` against the hosts given with
``--dockyard HOST`` (repeatable) and docker-compose v1 (``--docker-compose PATH``) against the
hosts given with ``--peer HOST``. Projects are named ``dycbench<random>`` and removed afterwards.

    python plugins/compose/bench/compose_bench.py --services 10 --runs 3 \\
        --dockyard unix:///run/dockyard-demo/dockyard.sock --dockyard unix:///run/dyc-bench-podman.sock \\
        --docker-compose /tmp/dc1/bin/docker-compose --peer unix:///run/dyc-bench-podman.sock
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVICE = """  s{i}:
    image: busybox
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
    stop_grace_period: 2s
"""


def project_file(n: int) -> str:
    return "services:\n" + "".join(SERVICE.format(i=i) for i in range(n))


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> float:
    t0 = time.perf_counter()
    res = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    dt = time.perf_counter() - t0
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")
    return dt


def measure(client: str, argv: list[str], host: str, n: int, runs: int) -> dict[str, float]:
    ups, downs = [], []
    for _ in range(runs):
        name = f"dycbench{secrets.token_hex(3)}"
        with tempfile.TemporaryDirectory(prefix=name) as tmp:
            d = Path(tmp)
            (d / "compose.yaml").write_text(project_file(n))
            env = {k: v for k, v in os.environ.items() if k not in ("DOCKYARD_HOST", "DOCKER_HOST")}
            env["DOCKER_HOST"] = host
            try:
                ups.append(timed([*argv, "-p", name, "up", "-d"], env, d))
            finally:
                downs.append(timed([*argv, "-p", name, "down", "-v"], env, d))
    return {"up": statistics.median(ups), "down": statistics.median(downs)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dockyard", action="append", default=[], metavar="HOST")
    ap.add_argument("--docker-compose", metavar="PATH")
    ap.add_argument("--peer", action="append", default=[], metavar="HOST")
    args = ap.parse_args()
    dockyard = [str(Path(sys.executable).parent / "dockyard"), "compose", "--quiet-progress"]
    rows: list[tuple[str, str, dict[str, float]]] = []
    for host in args.dockyard:
        rows.append(("dockyard compose", host, measure("dockyard", dockyard, host, args.services, args.runs)))
    if args.docker_compose:
        for host in args.peer:
            rows.append(("docker-compose v1", host, measure("v1", [args.docker_compose], host, args.services,
                                                              args.runs)))
    if not rows:
        raise SystemExit("nothing to measure: give --dockyard and/or --docker-compose with --peer")
    base = rows[-1][2]
    print(f"{args.services} services, median of {args.runs} runs (seconds); ratio = time / last row's time")
    print(f"{'client':18} {'engine':44} {'up -d':>7} {'ratio':>6} {'down':>7} {'ratio':>6}")
    for client, host, r in rows:
        print(f"{client:18} {host:44} {r['up']:7.2f} {r['up'] / base['up']:6.2f} "
              f"{r['down']:7.2f} {r['down'] / base['down']:6.2f}")


if __name__ == "__main__":
    main()
