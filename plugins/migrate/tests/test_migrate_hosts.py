"""dockyard migrate between two netns hosts: a stateful busybox service (a counter in the
shell's memory, a file in a named volume, a change in the writable layer) moves, keeps its
state and its address, and the source's copy is gone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

pytestmark = [pytest.mark.timeout(120)]

#: counts in memory: every line sent to port 7000 gets the next number back
SERVICE = ("echo layer > /etc/migrated; echo vol > /data/v; mkfifo /tmp/f; "
           "while true; do nc -l -p 7000 < /tmp/f | (while read l; do i=$((i+1)); echo $i; done) > /tmp/f; done")


def dockyard(host: Any, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **host.docker_env()}
    env.pop("DOCKYARD_HOST", None)
    return subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H", host.url, *args], env=env,
                          capture_output=True, text=True, check=check, timeout=90)


def test_stop_copy_moves_state_volume_and_layer(pair: Any) -> None:
    h1, h2 = pair.hosts
    h1.docker("volume", "create", "kvdata")
    h1.docker("run", "-d", "--name", "kv", "-v", "kvdata:/data", "busybox", "sh", "-c", SERVICE)
    ip = h1.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "kv").stdout.strip()
    h1.docker("exec", "kv", "sh", "-c", "echo later > /data/w")
    out = dockyard(h1, "migrate", "--json", "--mode", "stop-copy", "kv", h2.url, check=False)
    assert out.returncode == 0, out.stderr + out.stdout + h1.log[-3000:] + h2.log[-3000:]
    result = [json.loads(line) for line in out.stdout.splitlines() if '"Result"' in line][-1]["Result"]
    assert result["Mode"] == "stop-copy" and result["Bytes"] > 0
    assert h1.docker("ps", "-aq", "--filter", "name=kv").stdout.strip() == ""
    assert h2.docker("inspect", "-f", "{{.State.Running}}", "kv").stdout.strip() == "true"
    assert h2.docker("exec", "kv", "cat", "/etc/migrated", "/data/v", "/data/w").stdout.split() == ["layer", "vol", "later"]
    assert h2.docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "kv").stdout.strip() == ip
    # dockyard_migration_phase (the engines' test-only plugin logs it): every phase, in order,
    # on each side, one migration ID for both
    source = [p for p in pair.faults.phases(h1) if p[2] == "kv"]
    target = [p for p in pair.faults.phases(h2) if p[2] == "kv"]
    assert [(s, p) for s, p, _c, _m in source] == [("source", p) for p in ("dump", "transfer", "restore", "cleanup")]
    assert [(s, p) for s, p, _c, _m in target] == [("target", p) for p in ("transfer", "restore", "cleanup")]
    assert len({m for *_x, m in source + target}) == 1
    h2.docker("rm", "-f", "kv")
    h2.docker("volume", "rm", "kvdata")
    h1.docker("volume", "rm", "kvdata", check=False)


def test_lazy_pages_moves_memory_after_the_restore(pair: Any) -> None:
    """Post-copy: the target runs before it has the memory; pages come from the source's page
    server as they fault, the rest in the background. The counter goes on from where it was."""
    h1, h2 = pair.hosts
    h1.docker("run", "-d", "--name", "lz", "busybox", "sh", "-c",
              "while true; do i=$((i+1)); echo $i > /tmp/count.t; mv /tmp/count.t /tmp/count; sleep 0.05; done")
    import time

    time.sleep(0.5)
    out = dockyard(h1, "migrate", "--json", "--mode", "lazy", "lz", h2.url, check=False)
    assert out.returncode == 0, out.stderr + out.stdout + h1.log[-3000:] + h2.log[-3000:]
    result = [json.loads(line) for line in out.stdout.splitlines() if '"Result"' in line][-1]["Result"]
    assert result["Mode"] == "lazy"
    first = int(h2.docker("exec", "lz", "cat", "/tmp/count").stdout)
    time.sleep(0.3)
    assert int(h2.docker("exec", "lz", "cat", "/tmp/count").stdout) > first > 5
    assert h1.docker("ps", "-aq", "--filter", "name=lz").stdout.strip() == ""
    h2.docker("rm", "-f", "lz")
