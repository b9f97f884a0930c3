"""Crash safety: a migration interrupted at each phase, on either side, by a failure or by the
daemon's death (the engines' test-only plugin fails or kills them from the
``dockyard_migration_phase`` hook: conftest's ``Faults``; ``kill`` ends the engine as kill -9
does), and the migrating client killed with SIGKILL. Afterwards the container runs on exactly one
host, its memory (a counter that goes on from where it was), writable layer and volume intact;
nothing is left of the migration (journal, checkpoints, FIFOs, half-made containers)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

#: counts in memory, shows the count in the writable layer
COUNTER = "echo layer > /etc/migrated; echo vol > /data/v; while true; do i=$((i+1)); echo $i > /tmp/count.t; mv /tmp/count.t /tmp/count; sleep 0.05; done"


def data_root(host: Any) -> Path:
    return Path(host.host.extra["root"]) / "data"


def migrate(src: Any, dst: Any, name: str, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_"))}
    env.update({k: v for k, v in src.docker_env().items() if k != "DOCKER_CONFIG"})
    return subprocess.Popen([sys.executable, "-m", "dockyard.cli.main", "migrate", "--mode", "stop-copy", *extra,
                             name, dst.url], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def running(host: Any, name: str) -> bool:
    out = host.docker("inspect", "-f", "{{.State.Running}}", name, check=False)
    return out.returncode == 0 and out.stdout.strip() == "true"


def exists(host: Any, name: str) -> bool:
    return host.docker("inspect", name, check=False).returncode == 0


async def wait_for(cond: Any, timeout: float = 20, what: str = "") -> None:
    end = time.monotonic() + timeout
    while not await asyncio.to_thread(cond):
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.2)


def count(host: Any, name: str) -> int:
    return int(host.docker("exec", name, "cat", "/tmp/count").stdout.strip() or 0)


def leftovers(host: Any) -> list[str]:
    root = data_root(host) / "migrate"
    out = [str(p) for p in root.rglob("*") if p.is_file() and p.name != "criu-runc.conf"] if root.exists() else []
    return out


CASES = [("source", "dump", "raise"), ("source", "transfer", "raise"), ("source", "restore", "raise"),
         ("target", "transfer", "raise"), ("source", "dump", "kill"), ("target", "restore", "kill"),
         ("source", "cleanup", "kill"), ("target", "cleanup", "kill"), ("source", "cleanup", "raise")]


@pytest.mark.parametrize(("side", "phase", "action"), CASES, ids=[":".join(c) for c in CASES])
async def test_interrupted_migration_leaves_one_copy(pair: Any, side: str, phase: str, action: str) -> None:
    h1, h2 = pair.hosts
    name = f"c-{side}-{phase}-{action}"
    vol = f"v-{side}-{phase}-{action}"
    await asyncio.to_thread(h1.docker, "run", "-d", "--name", name, "-v", f"{vol}:/data", "busybox", "sh", "-c", COUNTER)
    await wait_for(lambda: count(h1, name) > 3, what="the counter runs")
    faulty = h1 if side == "source" else h2
    fault = pair.faults.inject(faulty, side, phase, action)
    proc = await asyncio.to_thread(migrate, h1, h2, name)
    out, _ = await asyncio.to_thread(proc.communicate, timeout=90)
    if action == "kill":
        await pair.revive(faulty)
    committed = (side, phase) in (("source", "cleanup"), ("target", "cleanup"))
    home, other = (h2, h1) if committed else (h1, h2)
    await wait_for(lambda: running(home, name) and not exists(other, name), 30,
                   f"{name} runs on {home.name} only (migrate said: {out[-600:]})")
    before = await asyncio.to_thread(count, home, name)
    await asyncio.sleep(0.3)
    after = await asyncio.to_thread(count, home, name)
    assert after > before > 3, (before, after)  # the same memory: it went on, it did not start over
    cat = await asyncio.to_thread(home.docker, "exec", name, "cat", "/etc/migrated", "/data/v")
    assert cat.stdout.split() == ["layer", "vol"]
    assert not fault.exists()
    await wait_for(lambda: not leftovers(h1) and not leftovers(h2), 10, "the journals are settled")
    await asyncio.to_thread(home.docker, "rm", "-f", "-v", name)
    for h in (h1, h2):
        await asyncio.to_thread(h.docker, "volume", "rm", vol, check=False)


async def test_client_killed_mid_migration(pair: Any) -> None:
    """SIGKILL the migrating client once the migration started: the engines finish it."""
    h1, h2 = pair.hosts
    name = "c-client-kill"
    await asyncio.to_thread(h1.docker, "run", "-d", "--name", name, "-v", "v-client:/data", "busybox", "sh", "-c",
                            COUNTER)
    await wait_for(lambda: count(h1, name) > 3, what="the counter runs")
    proc = await asyncio.to_thread(migrate, h1, h2, name, "--json")
    assert proc.stdout is not None
    line = await asyncio.to_thread(proc.stdout.readline)  # the first progress line: it started
    assert "Progress" in line, line
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    await wait_for(lambda: running(h2, name) and not exists(h1, name), 30, "the engines finish the move")
    assert (await asyncio.to_thread(count, h2, name)) > 3
    await asyncio.to_thread(h2.docker, "rm", "-f", "-v", name)
    for h in (h1, h2):
        await asyncio.to_thread(h.docker, "volume", "rm", "v-client", check=False)
