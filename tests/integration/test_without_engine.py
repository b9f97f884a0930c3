"""Uninstalling the engine removes its feature cleanly and says how to get it back: dockyardd
starts without any service provider, answers what needs no service, and every request that
needs one is a 501 naming the distribution to install (the real docker CLI shows it)."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.integration


class _Unix(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=30)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


def get(daemon: Any, path: str) -> tuple[int, bytes]:
    conn = _Unix(str(daemon.socket))
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_dockyardd_without_the_engine_names_the_distribution(dockyardd_factory: Callable[..., Any]) -> None:
    # What uninstalling dockyard-engine looks like to the registry: its entry point is denied.
    d = dockyardd_factory("no-engine", env={"DOCKYARD_DISABLE_PLUGINS": "engine"})
    assert get(d, "/_ping") == (200, b"OK")
    status, body = get(d, "/v1.41/containers/json")
    message = json.loads(body)["message"]
    assert status == 501, message
    assert "containers service is not installed" in message and "pip install dockyard-engine" in message
    if shutil.which("docker"):
        out = d.docker("volume", "ls", check=False)
        assert out.returncode != 0 and "pip install dockyard-engine" in out.stderr
