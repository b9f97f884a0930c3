"""Client-side pieces: create bodies, host resolution, stream framing, build contexts."""

from __future__ import annotations

import io
import struct
import tarfile
from pathlib import Path

import pytest

from dockyard_compose import engine as E
from dockyard_compose import spec
from dockyard_compose.context import build_context, ignored
from dockyard_compose.errors import ComposeError
from dockyard_compose.loader import LoadOptions, load


def test_create_body_matches_what_compose_sends(tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("""
name: cap
services:
  web:
    image: busybox
    command: httpd -f -p 8080
    environment: {ROLE: web, EMPTY: ""}
    labels: {cap.test: web}
    ports: ["127.0.0.1:18090:8080", "9000/udp"]
    expose: [7000]
    volumes: ["capdata:/data", "./site:/www:ro", "/scratch", {type: tmpfs, target: /run/t, tmpfs: {size: 1m}}]
    networks:
      capnet: {aliases: [www]}
      other: {}
    healthcheck: {test: "wget -q localhost", interval: 2s, timeout: 1s, retries: 3, start_period: 500ms}
    restart: on-failure:3
    mem_limit: 64m
    cpus: 0.5
    stop_grace_period: 1m30s
    user: "1000"
networks:
  capnet:
  other:
volumes:
  capdata:
""")
    loaded = load(LoadOptions(files=[str(tmp_path / "compose.yaml")], environ={}, cwd=str(tmp_path)))
    svc = loaded.model.services["web"]
    body = spec.create_body(loaded, "web", svc, 1, "busybox", {"k": "v"})
    assert body["Image"] == "busybox"
    assert body["Cmd"] == ["httpd", "-f", "-p", "8080"]
    assert body["Env"] == ["EMPTY=", "ROLE=web"]
    assert body["Labels"] == {"cap.test": "web", "k": "v"}
    assert body["ExposedPorts"] == {"8080/tcp": {}, "9000/udp": {}, "7000/tcp": {}}
    host = body["HostConfig"]
    assert host["PortBindings"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "18090"}],
                                    "9000/udp": [{"HostIp": "", "HostPort": ""}]}
    assert host["Binds"] == ["cap_capdata:/data:rw", f"{(tmp_path / 'site').resolve()}:/www:ro"]
    assert body["Volumes"] == {"/scratch": {}}
    assert host["Tmpfs"] == {"/run/t": "size=1048576"}
    assert host["NetworkMode"] == "cap_capnet"
    assert body["NetworkingConfig"] == {"EndpointsConfig": {"cap_capnet": {"Aliases": ["web", "www"]}}}
    assert spec.sorted_networks(svc) == ["capnet", "other"]
    assert body["Healthcheck"] == {"Test": ["CMD-SHELL", "wget -q localhost"], "Interval": 2_000_000_000,
                                   "Timeout": 1_000_000_000, "StartPeriod": 500_000_000, "Retries": 3}
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert host["Memory"] == 64 * 1024 * 1024 and host["NanoCpus"] == 500_000_000
    assert body["StopTimeout"] == 90 and body["User"] == "1000"
    assert spec.container_name("cap", "web", svc, 2) == "cap-web-2"


@pytest.mark.parametrize("flag,dyh,dh,expected", [
    ("unix:///flag.sock", "unix:///dy.sock", "unix:///docker.sock", "unix:///flag.sock"),
    (None, "unix:///dy.sock", "unix:///docker.sock", "unix:///dy.sock"),
    (None, None, "unix:///docker.sock", "unix:///docker.sock"),
    (None, None, None, "unix:///run/dockyard/dockyard.sock"),
])
def test_host_resolution(monkeypatch: pytest.MonkeyPatch, flag, dyh, dh, expected) -> None:
    for var, val in (("DOCKYARD_HOST", dyh), ("DOCKER_HOST", dh)):
        if val is None:
            monkeypatch.delenv(var, raising=False)
        else:
            monkeypatch.setenv(var, val)
    assert E.resolve_host(flag) == expected


def test_root_host_option_reaches_the_engine(tmp_path: Path, stub_engine, compose_cli, monkeypatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox\n")
    from click.testing import CliRunner

    from dockyard.cli.root import cli

    res = CliRunner().invoke(cli, ["-H", stub_engine.host, "compose", "-f", str(tmp_path / "compose.yaml"),
                                   "-p", "dychost", "ps"])
    assert res.exit_code == 0, res.output
    assert ("GET", "/containers/json") in stub_engine.requests


def frame(stream: int, payload: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + struct.pack(">I", len(payload)) + payload


def test_demux_handles_split_and_joined_frames() -> None:
    data = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"x" * 70000)
    buf = io.BytesIO(data)
    reads = [3, 30, 5, 100000, 100000]

    def read(n: int) -> bytes:  # deliberately uneven reads
        return buf.read(min(n, reads.pop(0) if reads else n))

    assert list(E.demux(read)) == [(1, b"out\n"), (2, b"err\n"), (1, b"x" * 70000)]


def test_demux_stops_on_truncated_frame() -> None:
    data = frame(1, b"ok") + frame(1, b"truncated")[:-3]
    assert list(E.demux(io.BytesIO(data).read)) == [(1, b"ok"), (1, b"trunca")]


def test_dockerignore_rules() -> None:
    pats = [(False, "*.log"), (False, "build"), (True, "build/keep.txt"), (False, "**/secret")]
    assert ignored("a.log", pats) and not ignored("a.txt", pats)
    assert ignored("build/x.o", pats) and not ignored("build/keep.txt", pats)
    assert ignored("deep/dir/secret", pats)


def test_build_context_tar(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM busybox\n")
    (tmp_path / "keep.txt").write_text("k")
    (tmp_path / "drop.log").write_text("d")
    (tmp_path / ".dockerignore").write_text("*.log\n")
    data, dockerfile = build_context(tmp_path, None, None)
    names = tarfile.open(fileobj=io.BytesIO(data)).getnames()
    assert dockerfile == "Dockerfile"
    assert sorted(names) == [".dockerignore", "Dockerfile", "keep.txt"]
    data, dockerfile = build_context(tmp_path, None, "FROM busybox\nRUN true\n")
    assert dockerfile.startswith(".dockyard-compose.Dockerfile.")
    assert dockerfile in tarfile.open(fileobj=io.BytesIO(data)).getnames()
    with pytest.raises(ComposeError, match="Dockerfile .*nope not found"):
        build_context(tmp_path, "nope", None)
