"""Compose against the manager: ``dockyard compose`` pointed at a swarm manager spreads a
project's services and replicas over the nodes and honours the constraints the compose file
gives (Swarm classic's ``com.docker.swarm.constraints`` label, and the ``constraint:`` env entry)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(180)]

COMPOSE = """\
name: spread
services:
  web:
    image: busybox
    command: ["sleep", "3600"]
    deploy:
      replicas: 3
  pinned:
    image: busybox
    command: ["sleep", "3600"]
    labels:
      com.docker.swarm.constraints: '["node==h2"]'
    scale: 2
    depends_on: [web]
  away:
    image: busybox
    command: ["sleep", "3600"]
    environment:
      - "constraint:node!=h1"
    depends_on: [pinned]
"""


def compose(cluster: Any, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if importlib_missing("dockyard_compose"):
        pytest.skip("dockyard compose is not installed: pip install dockyard-compose")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_"))}
    res = subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H", f"unix://{cluster.manager.socket}",
                          "compose", "--project-directory", str(project), "-f", str(project / "compose.yaml"),
                          *args], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, f"compose {' '.join(args)}: {res.stdout}\n{res.stderr}\n{cluster.manager.log()[-3000:]}"
    return res


def importlib_missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


async def test_compose_spreads_replicas_and_honours_constraints(swarm_cluster: Any, tmp_path: Path) -> None:
    c = swarm_cluster
    (tmp_path / "compose.yaml").write_text(COMPOSE)
    await asyncio.to_thread(compose, c, tmp_path, "up", "-d")
    try:
        out = c.docker("ps", "--filter", "label=com.docker.compose.project=spread",
                       "--format", '{{.Names}}\t{{.Label "com.docker.compose.service"}}').stdout
        placed: dict[str, list[str]] = {}
        for line in out.splitlines():
            name, _, service = line.partition("\t")
            placed.setdefault(service, []).append(name.partition("/")[0])
        assert sorted(placed["web"]) == ["h1", "h2", "h3"], placed  # spread: one replica per node
        assert placed["pinned"] == ["h2", "h2"], placed  # the compose file's constraint label
        # the constraint env entry keeps it off h1; spread then takes the emptier of h2 and h3
        assert placed["away"] == ["h3"], placed
        assert sum(Counter(n for nodes in placed.values() for n in nodes).values()) == 6
    finally:
        await asyncio.to_thread(compose, c, tmp_path, "down", "-t", "0")
    assert not c.docker("ps", "-a", "-q", "--filter", "label=com.docker.compose.project=spread").stdout.strip()
