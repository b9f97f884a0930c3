"""Fixtures: a recording stub engine (unit tests) and real engines for the e2e tests.

The e2e ``engine`` fixture is parametrised by engine kind: ``podman`` (its Docker-compatible API
service, one per session on its own socket, killed by PID) and ``dockyardd`` (a fresh daemon per
session, started with the plugin SDK's ``start_dockyardd`` fixture -- the helper behind its
``dockyardd`` fixture -- with busybox bootstrapped through the API). One daemon per session
rather than per test: a fresh one costs 3-5 s of start-up and bootstrap for each of the tests.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import socketserver
import subprocess
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from dockyard_plugin_sdk.testing import Daemon, WaitTimeout, wait_for

ENGINES = ["podman", "dockyardd"]


# --- a recording stub engine ------------------------------------------------------------------------


@dataclass
class StubEngine:
    """Answers enough of the API for compose's read-only pre-flight; records every request."""

    path: str
    requests: list[tuple[str, str]] = field(default_factory=list)
    networks: set[str] = field(default_factory=set)
    volumes: set[str] = field(default_factory=set)

    @property
    def host(self) -> str:
        return f"unix://{self.path}"

    def mutations(self) -> list[tuple[str, str]]:
        return [r for r in self.requests if r[0] != "GET"]


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _handler(stub: StubEngine) -> type[BaseHTTPRequestHandler]:
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def address_string(self) -> str:
            return "stub"

        def _reply(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            path = re.sub(r"^/v[0-9.]+", "", self.path.split("?")[0])
            stub.requests.append((self.command, path))
            if self.command != "GET":
                return self._reply(500, {"message": "stub engine: refusing to change anything"})
            if path == "/version":
                return self._reply(200, {"ApiVersion": "1.41", "Components": [{"Name": "Stub"}]})
            m = re.match(r"^/(networks|volumes)/([^/]+)$", path)
            if m:
                have = stub.networks if m.group(1) == "networks" else stub.volumes
                if m.group(2) in have:
                    return self._reply(200, {"Name": m.group(2), "Labels": {}})
                return self._reply(404, {"message": f"no such {m.group(1)[:-1]}: {m.group(2)}"})
            if path == "/containers/json":
                return self._reply(200, [])
            if re.match(r"^/images/.+/json$", path):
                return self._reply(200, {"Id": "sha256:" + "0" * 64})
            return self._reply(404, {"message": "not in the stub"})

        do_GET = do_POST = do_DELETE = do_PUT = do_HEAD = _any

    return H


@pytest.fixture
def stub_engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StubEngine]:
    path = str(tmp_path / "stub.sock")
    stub = StubEngine(path)
    server = _UnixServer(path, _handler(stub))
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)
    monkeypatch.setenv("DOCKER_HOST", stub.host)
    yield stub
    server.shutdown()
    server.server_close()


@pytest.fixture
def compose_cli(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Invoke ``dockyard compose ...`` in-process through the real root group."""
    from dockyard.cli.root import cli

    for var in ("COMPOSE_FILE", "COMPOSE_PROJECT_NAME", "COMPOSE_PROFILES"):
        monkeypatch.delenv(var, raising=False)

    def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> Any:
        runner = CliRunner()
        old = os.getcwd()
        if cwd is not None:
            os.chdir(cwd)
        try:
            return runner.invoke(cli, ["compose", *args], env=env, catch_exceptions=False)
        finally:
            os.chdir(old)

    return run


# --- podman's Docker-compatible API service ------------------------------------------------------------


@dataclass
class Engine:
    kind: str
    host: str
    pid: int | None = None

    def api(self, method: str, path: str, **params: Any) -> Any:
        from dockyard.client import Client

        c = Client(self.host, timeout=60)
        if method == "GET":
            return c.get(path, **params)
        if method == "DELETE":
            return c.delete(path, **params)
        return c.post(path, **params)

    def project_objects(self, project: str) -> dict[str, list[str]]:
        flt = json.dumps({"label": [f"com.docker.compose.project={project}"]})
        cont = [c["Names"][0].lstrip("/") for c in self.api("GET", "/containers/json", all=1, filters=flt)]
        nets = [n["Name"] for n in self.api("GET", "/networks", filters=flt) or []
                if (n.get("Labels") or {}).get("com.docker.compose.project") == project]
        vols = [v["Name"] for v in (self.api("GET", "/volumes", filters=flt) or {}).get("Volumes") or []
                if (v.get("Labels") or {}).get("com.docker.compose.project") == project]
        return {"containers": sorted(cont), "networks": sorted(nets), "volumes": sorted(vols)}

    def _images(self, **params: Any) -> list[dict[str, Any]]:
        """Image list for cleanup; the shared podman store can fail a listing while another
        session deletes an image (``image not known``): retry, then give up quietly."""
        from dockyard.errors import DockyardError

        try:
            (listed,) = wait_for(lambda: (self.api("GET", "/images/json", **params) or [],), 1.5,
                                 "an image listing", ignore=(DockyardError, OSError))
        except WaitTimeout:
            return []
        return listed

    def purge(self, project: str) -> None:
        """Remove whatever a test left behind (only objects labelled with its project)."""
        flt = json.dumps({"label": [f"com.docker.compose.project={project}"]})
        for c in self.api("GET", "/containers/json", all=1, filters=flt):
            try:
                self.api("DELETE", f"/containers/{c['Id']}", force=1, v=1)
            except Exception:  # noqa: BLE001
                pass
        objs = self.project_objects(project)
        for n in objs["networks"]:
            try:
                self.api("DELETE", f"/networks/{n}")
            except Exception:  # noqa: BLE001
                pass
        for v in objs["volumes"]:
            try:
                self.api("DELETE", f"/volumes/{v}", force=1)
            except Exception:  # noqa: BLE001
                pass
        for img in self._images():
            for tag in img.get("RepoTags") or []:
                if tag.split("/")[-1].startswith(project + "-"):
                    try:
                        self.api("DELETE", f"/images/{tag}")
                    except Exception:  # noqa: BLE001
                        pass
        # Images our builds labelled with this project (a rebuild leaves the old one untagged).
        for img in self._images(all=1, filters=flt):
            if (img.get("Labels") or {}).get("com.docker.compose.project") == project:
                try:
                    self.api("DELETE", f"/images/{img['Id']}")
                except Exception:  # noqa: BLE001
                    pass


def _ping(path: str) -> bool:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(2)
    try:
        s.connect(path)
        s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
        return s.recv(64).split(b" ")[1:2] == [b"200"]
    except OSError:
        return False
    finally:
        s.close()


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local plain-HTTP registry on 127.0.0.1 (Debian's docker-registry), killed by PID."""
    exe = shutil.which("docker-registry")
    if exe is None:
        yield ""
        return
    d = tmp_path_factory.mktemp("registry")
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    (d / "config.yml").write_text(f"version: 0.1\nstorage: {{filesystem: {{rootdirectory: {d / 'data'}}}, "
                                  f"delete: {{enabled: true}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n"
                                  "log: {level: error}\n")
    proc = subprocess.Popen([exe, "serve", str(d / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    def listening() -> bool:
        if proc.poll() is not None:
            raise WaitTimeout(f"docker-registry on 127.0.0.1:{port} (it exited {proc.returncode})", 0)
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True

    try:
        try:
            wait_for(listening, 10, f"docker-registry on 127.0.0.1:{port}", ignore=(OSError,))
        except WaitTimeout:
            yield ""
            return
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def podman_service(registry: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("podman is not installed (run shared/peers/setup-peers.sh)")
    sock = f"/run/dyc-e2e-{os.getpid()}.sock"
    if os.path.exists(sock):
        os.unlink(sock)
    env = dict(os.environ)
    if registry:  # the service must be told the local plain-HTTP registry is insecure
        conf = tmp_path_factory.mktemp("podman-conf") / "registries.conf"
        conf.write_text('unqualified-search-registries = ["docker.io"]\n'
                        f'[[registry]]\nlocation = "{registry}"\ninsecure = true\n')
        env["CONTAINERS_REGISTRIES_CONF"] = str(conf)
    log = open(tmp_path_factory.mktemp("podman-log") / "service.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([podman, "system", "service", "--time=0", f"unix://{sock}"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    try:
        def up() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"podman system service exited {proc.returncode}")
            return _ping(sock)

        wait_for(up, 20, f"podman system service on {sock}")
        eng = Engine("podman", f"unix://{sock}", proc.pid)
        images = {t for i in eng.api("GET", "/images/json") or [] for t in i.get("RepoTags") or []}
        if "docker.io/library/busybox:latest" not in images:
            pytest.skip("the offline busybox image is missing (run shared/peers/setup-peers.sh)")
        yield eng
    finally:
        proc.send_signal(signal.SIGTERM)  # our own child, by PID
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        if os.path.exists(sock):
            os.unlink(sock)


@pytest.fixture(scope="session")
def dockyardd_service(tmp_path_factory: pytest.TempPathFactory,
                      start_dockyardd: Callable[..., Daemon]) -> Iterator[Engine]:
    daemon = start_dockyardd(tmp_path_factory.mktemp("dockyardd"))
    try:
        eng = Engine("dockyardd", daemon.host, daemon.proc.pid)
        eng.api("POST", "/dockyard/images/bootstrap", name="busybox")
        yield eng
    finally:
        code = daemon.stop()
        assert code == 0, f"dockyardd exited {code}:\n{daemon.log[-3000:]}"


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Engine:
    if request.param == "podman":
        return request.getfixturevalue("podman_service")
    if request.param == "dockyardd":
        return request.getfixturevalue("dockyardd_service")
    raise AssertionError(f"unknown engine {request.param}")  # pragma: no cover


@pytest.fixture
def project(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A unique project name (prefix ``dyce2e``) and directory; everything labelled with it is removed."""
    name = f"dyce2e{secrets.token_hex(3)}"
    monkeypatch.delenv("DOCKYARD_HOST", raising=False)
    monkeypatch.setenv("DOCKER_HOST", engine.host)
    d = tmp_path / name
    d.mkdir()
    yield name, d
    engine.purge(name)
