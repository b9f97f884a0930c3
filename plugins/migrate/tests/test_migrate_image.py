"""dockyard migrate to an engine that has never had the container's image: the source sends it
(the engine's ``image save`` archive, over the migration's connection, before anything is
frozen) and the target loads it through its image load; an image stream that does not match
its digests is refused and the container runs on at the source."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.timeout(120)]

SERVICE = ("echo layer > /etc/migrated; "
           "while true; do i=$((i+1)); echo $i > /tmp/count.t; mv /tmp/count.t /tmp/count; sleep 0.05; done")


def dockyard(host: Any, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **host.docker_env()}
    env.pop("DOCKYARD_HOST", None)
    return subprocess.run([sys.executable, "-m", "dockyard.cli.main", "-H", host.url, *args], env=env,
                          capture_output=True, text=True, check=False, timeout=90)


def image_id(host: Any, ref: str) -> str:
    out = host.docker("image", "inspect", "-f", "{{.Id}}", ref, check=False)
    return out.stdout.strip() if out.returncode == 0 else ""


def test_the_image_travels_when_the_target_lacks_it(pair: Any) -> None:
    h1, h2 = pair.hosts
    h2.docker("rmi", "busybox")
    assert image_id(h2, "busybox") == ""
    want = image_id(h1, "busybox")
    h1.docker("run", "-d", "--name", "im", "busybox", "sh", "-c", SERVICE)
    import time

    time.sleep(0.3)
    out = dockyard(h1, "migrate", "--json", "--mode", "stop-copy", "im", h2.url)
    assert out.returncode == 0, out.stderr + out.stdout + h1.log[-3000:] + h2.log[-3000:]
    lines = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    result = [x for x in lines if "Result" in x][-1]["Result"]
    assert "image" in [x["Progress"]["Phase"] for x in lines if "Progress" in x]
    size = int(h1.docker("image", "inspect", "-f", "{{.Size}}", "busybox").stdout)
    assert result["Phases"]["image"] > 0 and result["Bytes"] > size  # busybox's layer went over
    assert image_id(h2, "busybox") == want  # loaded, digests as on the source, tagged as there
    assert h2.docker("inspect", "-f", "{{.State.Running}}", "im").stdout.strip() == "true"
    first = int(h2.docker("exec", "im", "cat", "/tmp/count").stdout)
    time.sleep(0.3)
    assert int(h2.docker("exec", "im", "cat", "/tmp/count").stdout) > first > 3  # its memory went on
    assert h2.docker("exec", "im", "cat", "/etc/migrated").stdout.strip() == "layer"
    assert h1.docker("ps", "-aq", "--filter", "name=im").stdout.strip() == ""
    source = [(s, p) for s, p, c, _m in pair.faults.phases(h1) if c == "im"]
    target = [(s, p) for s, p, c, _m in pair.faults.phases(h2) if c == "im"]
    assert source == [("source", p) for p in ("image", "dump", "transfer", "restore", "cleanup")]
    assert target == [("target", p) for p in ("image", "transfer", "restore", "cleanup")]
    h2.docker("rm", "-f", "im")


def test_a_corrupt_image_is_refused_and_the_container_runs_on(pair: Any) -> None:
    """The source's stored layer no longer matches its digest (a disk's bit rot, or a forged
    store): the target's load refuses the stream, nothing of the move stays there, and the
    container keeps running on the source."""
    h1, h2 = pair.hosts
    h1.docker("run", "-d", "--name", "base", "busybox", "sh", "-c", "echo forged > /forged; sleep 1000")
    h1.docker("commit", "base", "forged:1")
    h1.docker("rm", "-f", "base")
    layers = json.loads(h1.docker("image", "inspect", "-f", "{{json .RootFS.Layers}}", "forged:1").stdout)
    top = layers[-1].split(":", 1)[1]
    blobs = [p for p in Path(h1.host.extra["root"]).rglob(top) if p.parent.name == "sha256" and p.is_file()]
    assert blobs, f"no blob {top} under {h1.host.extra['root']}"
    for blob in blobs:  # same size, other bytes: only the digest tells
        data = bytearray(blob.read_bytes())
        data[-1100:-1024] = bytes(x ^ 0xFF for x in data[-1100:-1024])
        blob.write_bytes(bytes(data))
    try:
        h1.docker("run", "-d", "--name", "fg", "forged:1", "sh", "-c", SERVICE)
        out = dockyard(h1, "migrate", "--json", "--mode", "stop-copy", "fg", h2.url)
        assert out.returncode != 0, out.stdout
        assert "forged" in out.stderr + out.stdout and "refused" in out.stderr + out.stdout, out.stderr + out.stdout
        assert h1.docker("inspect", "-f", "{{.State.Running}}", "fg").stdout.strip() == "true"
        first = int(h1.docker("exec", "fg", "cat", "/tmp/count").stdout)
        import time

        time.sleep(0.3)
        assert int(h1.docker("exec", "fg", "cat", "/tmp/count").stdout) > first
        assert h2.docker("ps", "-aq", "--filter", "name=fg").stdout.strip() == ""
        assert image_id(h2, "forged:1") == ""
        assert not list((Path(h2.host.extra["root"]) / "data" / "migrate").rglob("journal/*.json"))
    finally:
        h1.docker("rm", "-f", "fg", check=False)
        h1.docker("rmi", "forged:1", check=False)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_target_lost_in_the_image_phase(pair: Any) -> None:
    """The target's engine dies (kill -9) once it asked for the image: the source's stream
    breaks off, the migration ends with an error naming the image, the container runs on at the
    source, and the target, started again, has neither the container nor the image nor a
    migration to settle."""
    import asyncio

    h1, h2 = pair.hosts
    await asyncio.to_thread(h1.docker, "run", "-d", "--name", "base2", "busybox", "sh", "-c", "echo x > /x; sleep 1000")
    await asyncio.to_thread(h1.docker, "commit", "base2", "lost:1")
    await asyncio.to_thread(h1.docker, "rm", "-f", "base2")
    try:
        await asyncio.to_thread(h1.docker, "run", "-d", "--name", "lt", "lost:1", "sh", "-c", SERVICE)
        fault = pair.faults.inject(h2, "target", "image", "kill")
        out = await asyncio.to_thread(dockyard, h1, "migrate", "--mode", "stop-copy", "lt", h2.url)
        await pair.revive(h2)
        assert out.returncode != 0 and not fault.exists(), out.stdout + out.stderr
        assert "image lost:1" in out.stderr, out.stderr  # the error names the image
        assert (await asyncio.to_thread(h1.docker, "inspect", "-f", "{{.State.Running}}", "lt")).stdout.strip() == "true"
        assert (await asyncio.to_thread(h2.docker, "ps", "-aq", "--filter", "name=lt")).stdout.strip() == ""
        assert await asyncio.to_thread(image_id, h2, "lost:1") == ""
        assert not list((Path(h2.host.extra["root"]) / "data" / "migrate").rglob("journal/*.json"))
    finally:
        await asyncio.to_thread(h1.docker, "rm", "-f", "lt", check=False)
        await asyncio.to_thread(h1.docker, "rmi", "lost:1", check=False)


def test_a_name_the_target_uses_for_another_image_is_not_moved(pair: Any) -> None:
    """The target's ``mine:1`` is another image: the container's image goes by ID, untagged,
    and the target's tag stays where it was."""
    h1, h2 = pair.hosts
    h1.docker("run", "-d", "--name", "base3", "busybox", "sh", "-c", "echo 3 > /three; sleep 1000")
    h1.docker("commit", "base3", "mine:1")
    h1.docker("rm", "-f", "base3")
    h2.docker("tag", "busybox", "mine:1")
    ours, theirs = image_id(h1, "mine:1"), image_id(h2, "mine:1")
    try:
        h1.docker("run", "-d", "--name", "mi", "mine:1", "sh", "-c", SERVICE)
        out = dockyard(h1, "migrate", "--mode", "stop-copy", "mi", h2.url)
        assert out.returncode == 0, out.stderr + out.stdout + h2.log[-3000:]
        assert image_id(h2, "mine:1") == theirs != ours
        assert h2.docker("inspect", "-f", "{{.Image}}", "mi").stdout.strip() == ours
        assert h2.docker("exec", "mi", "cat", "/three").stdout.strip() == "3"
    finally:
        h2.docker("rm", "-f", "mi", check=False)
        h2.docker("rmi", "mine:1", check=False)
        h2.docker("rmi", ours, check=False)
        h1.docker("rm", "-f", "mi", check=False)
        h1.docker("rmi", "mine:1", check=False)
