"""Real clients against dockyardd: docker CLI 28 and docker-py 7 (version, info, ps, events)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import threading
import time

import pytest

from dockyard_plugin_sdk.testing import Daemon

pytestmark = pytest.mark.e2e


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=10)
        self.path_ = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path_)


def raw(d: Daemon, method: str, path: str) -> tuple[int, dict[str, str], bytes]:
    conn = UnixHTTP(str(d.socket))
    conn.request(method, path)
    resp = conn.getresponse()
    body = resp.read()
    conn.close()
    return resp.status, dict(resp.getheaders()), body


def test_docker_version_negotiates_1_41(dockyardd: Daemon):
    out = dockyardd.docker("version").stdout
    assert "Server: Dockyard Engine" in out
    assert "API version:      1.41 (minimum version 1.24)" in out
    fmt = dockyardd.docker("version", "--format", "{{.Server.APIVersion}}").stdout.strip()
    assert fmt == "1.41"


def test_docker_info_reports_real_figures(dockyardd: Daemon):
    out = dockyardd.docker("info").stdout
    assert "Storage Driver: overlay" in out
    assert "Containers: 0" in out and "Images: 0" in out
    info = json.loads(dockyardd.docker("info", "--format", "{{json .}}").stdout)
    assert info["NCPU"] >= 1 and info["MemTotal"] > 0
    assert info["CgroupVersion"] in ("1", "2")
    assert "local" in info["Plugins"]["Volume"] and "bridge" in info["Plugins"]["Network"]
    assert info["Swarm"]["LocalNodeState"] == "inactive"


def test_docker_ps_is_an_empty_table(dockyardd: Daemon):
    res = dockyardd.docker("ps", "-a")
    assert res.stdout.split("\n")[0].split() == ["CONTAINER", "ID", "IMAGE", "COMMAND", "CREATED",
                                                 "STATUS", "PORTS", "NAMES"]
    assert res.stdout.strip().count("\n") == 0 and res.stderr == ""
    bad = dockyardd.docker("ps", "--filter", "nonsense=1", check=False)
    assert bad.returncode != 0 and "invalid filter 'nonsense'" in bad.stderr


def test_docker_py(dockyardd: Daemon):
    docker = pytest.importorskip("docker", reason="docker-py is not installed")
    client = docker.DockerClient(base_url=dockyardd.host)
    try:
        assert client.ping() is True
        v = client.version()
        assert v["ApiVersion"] == "1.41" and v["Components"][0]["Name"] == "Engine"
        assert client.containers.list(all=True) == []
        assert client.info()["Driver"] == "overlay"
        with pytest.raises(docker.errors.APIError, match="too new"):
            docker.APIClient(base_url=dockyardd.host, version="1.45").info()
    finally:
        client.close()


def test_ping_headers_and_head_without_body(dockyardd: Daemon):
    status, headers, body = raw(dockyardd, "GET", "/_ping")
    assert (status, body) == (200, b"OK")
    assert headers["Api-Version"] == "1.41" and headers["Ostype"] == "linux"
    status, headers, body = raw(dockyardd, "HEAD", "/_ping")
    assert status == 200 and body == b""
    status, _, body = raw(dockyardd, "HEAD", "/v1.41/containers/nope/json")
    assert body == b""
    status, _, body = raw(dockyardd, "GET", "/v1.41/no/such/route")
    assert status == 404 and json.loads(body) == {"message": "page not found"}
    status, _, body = raw(dockyardd, "GET", "/v1.12/info")
    assert status == 400 and "too old" in json.loads(body)["message"]


def test_events_stream_filters_and_replay(dockyardd: Daemon):
    docker = pytest.importorskip("docker", reason="docker-py is not installed")
    since = str(int(time.time()) - 5)
    # replay: the daemon's own start event is in history
    assert " daemon start " in dockyardd.past_events(since)
    assert dockyardd.past_events(since, "type=container") == ""
    # live: a streaming subscriber sees a reload event as it happens. The request returns once
    # the daemon sent the answer's headers, and it subscribes in the same step (no await that
    # yields in between), before the SIGHUP handler can run: the signal comes after.
    client = docker.APIClient(base_url=dockyardd.host)
    stream = client.events(decode=True, filters={"type": "daemon", "event": "reload"})
    got: list[dict] = []
    arrived = threading.Event()

    def listen() -> None:
        for ev in stream:
            got.append(ev)
            arrived.set()
            return

    t = threading.Thread(target=listen, daemon=True)
    t.start()
    try:
        os.kill(dockyardd.proc.pid, signal.SIGHUP)
        assert arrived.wait(10), f"no reload event on the live stream within 10 s:\n{dockyardd.log[-2000:]}"
    finally:
        stream.close()
        client.close()
    assert got[0]["Action"] == "reload" and got[0]["Type"] == "daemon"
    assert isinstance(got[0]["timeNano"], int)


def test_our_cli_against_the_daemon(dockyardd: Daemon):
    out = dockyardd.dockyard("version").stdout
    assert "API version: 1.41" in out
    info = json.loads(dockyardd.dockyard("info", "--format", "json").stdout)
    assert info["Driver"] == "overlay"
    text = dockyardd.dockyard("info").stdout
    assert "Storage Driver: overlay" in text and "network:" in text
    gone = dockyardd.dockyard("-H", "unix:///nonexistent.sock", "info", check=False)
    assert gone.returncode == 1 and "Is dockyardd running?" in gone.stderr
