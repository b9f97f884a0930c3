"""Fixtures: one real dockyardd per e2e module (the plugin SDK's ``start_dockyardd``), with
busybox bootstrapped through the API; and build-context helpers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard_plugin_sdk.testing import Daemon

DOCKER = shutil.which("docker")


def api(sock: Path, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
        ) -> tuple[int, bytes]:
    """A raw HTTP/1.0 request on the daemon's socket (status, body)."""
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(120)
    s.connect(str(sock))
    hdrs = {"Host": "d", "Content-Length": str(len(body)), **(headers or {})}
    head = f"{method} {path} HTTP/1.0\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    s.sendall(head.encode() + body)
    data = b""
    while chunk := s.recv(65536):
        data += chunk
    s.close()
    head_raw, _, rest = data.partition(b"\r\n\r\n")
    status = int(head_raw.split(b" ")[1])
    if b"transfer-encoding: chunked" in head_raw.lower():
        out = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            n = int(size_line, 16)
            if n == 0:
                break
            out += rest[:n]
            rest = rest[n + 2:]
        rest = out
    return status, rest


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, start_dockyardd: Callable[..., Daemon]) -> Iterator[Daemon]:
    if os.geteuid() != 0:
        pytest.skip("dockyardd needs root")
    root = tmp_path_factory.mktemp("builder-daemon")
    d = start_dockyardd(root)
    try:
        status, body = api(d.socket, "POST", "/dockyard/images/bootstrap")
        assert status == 201, body
        yield d
    finally:
        try:
            # Failed RUN steps leave their container, as dockerd does; remove them all so that the
            # daemon stops with nothing of theirs (netns mounts, rootfs mounts) left on the host.
            status, body = api(d.socket, "GET", "/containers/json?all=1")
            if status == 200:
                for c in json.loads(body):
                    api(d.socket, "DELETE", f"/containers/{c['Id']}?force=1")
        finally:
            d.stop()
        left = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                if str(root) in line.split()[1]]
        assert not left, f"mounts left behind by the daemon: {left}"


def docker(d: Any, *args: str, buildkit: str | None = "0", check: bool = True,
           timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real docker CLI against ``d``; ``buildkit`` sets DOCKER_BUILDKIT (None: unset)."""
    if DOCKER is None:
        pytest.skip("the docker CLI is not installed")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
    env["DOCKER_CONFIG"] = str(d.root / "docker-config")
    if buildkit is not None:
        env["DOCKER_BUILDKIT"] = buildkit
    res = subprocess.run([DOCKER, "-H", d.host, *args], capture_output=True, text=True, env=env, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}\n"
                             f"daemon log:\n{d.log[-3000:]}")
    return res


def image_record(d: Any, image_id: str) -> dict[str, Any]:
    """The image's record in the daemon's state store (read-only; WAL lets us read alongside)."""
    import sqlite3

    conn = sqlite3.connect(f"file:{d.root / 'data' / 'state.db'}?mode=ro", uri=True)
    try:
        row = conn.execute("SELECT data FROM objects WHERE kind = 'image' AND id = ?", (image_id,)).fetchone()
    finally:
        conn.close()
    assert row is not None, f"no image record {image_id}"
    return json.loads(row[0])


@pytest.fixture(scope="session")
def h() -> Any:
    """The helpers above, for test modules (``--import-mode=importlib`` cannot import conftest)."""
    import types

    return types.SimpleNamespace(api=api, docker=docker, image_record=image_record)
