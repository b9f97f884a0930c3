"""Real clients against dockyardd over mutual TLS on 127.0.0.1: the docker CLI 28 (flags and
``DOCKER_HOST``/``DOCKER_TLS_VERIFY``/``DOCKER_CERT_PATH``), docker-py 7 (``TLSConfig`` and
``from_env``) and our own CLI run ``info`` and ``run --rm busybox echo hi``; the clients the daemon
must refuse (no certificate, another CA's, an expired one, plain HTTP) run nothing: no container,
no event, no request in the daemon's debug log. Certificates come from
``dockyard_machine.certs``, as ``dockyard machine`` will make them."""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon

certs = pytest.importorskip("dockyard_machine.certs", reason="needs dockyard-machine (the certificate store)")

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("docker") or not shutil.which("conmon"),
                                 reason="needs root, the docker CLI and conmon")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class TlsDaemon:
    d: Daemon
    port: int
    host: object  # dockyard_machine.certs.HostCerts
    store: object  # dockyard_machine.certs.MachineStore

    @property
    def url(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def tls_flags(self, cert: Path | None = None, key: Path | None = None) -> list[str]:
        """The docker CLI's flags for this daemon: its CA, and a client certificate (ours unless
        another is given; none when ``cert`` is False)."""
        flags = ["--tlsverify", "--tlscacert", str(self.host.ca)]
        if cert is not False:
            flags += ["--tlscert", str(cert or self.host.cert), "--tlskey", str(key or self.host.key)]
        return flags

    def docker(self, *args: str, env: dict[str, str] | None = None, check: bool = True,
               timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """The docker CLI with only the ``DOCKER_*`` variables given (none of the caller's)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}
        base["DOCKER_CONFIG"] = str(self.d.root / "docker-config")
        res = subprocess.run([shutil.which("docker"), *args], capture_output=True, text=True, timeout=timeout,
                             env={**base, **(env or {})})
        if check and res.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} exited {res.returncode}:\n{res.stderr}\n"
                                 f"daemon log:\n{self.d.log[-3000:]}")
        return res


@pytest.fixture
def tlsd(dockyardd_factory: Callable[..., Daemon], tmp_path: Path) -> Iterator[TlsDaemon]:
    """A daemon on its unix socket and, with mutual TLS, on 127.0.0.1; busybox bootstrapped."""
    store = certs.MachineStore(tmp_path / "store", org="dockyard-tests")
    host = store.issue_host("local", ["127.0.0.1", "localhost"])
    port = free_port()
    d = dockyardd_factory("d", "-H", f"tcp://127.0.0.1:{port}", "--debug", *host.daemon_flags())
    d.wait_for_log("tcp:// listeners:")
    d.dockyard("image", "bootstrap", "busybox")
    yield TlsDaemon(d, port, host, store)


def quiet_since(t: TlsDaemon, since: float, log_before: int) -> None:
    """Nothing happened since ``since``: no request in the debug log, no container, no event."""
    seen = t.d.log[log_before:]  # read first: the checks below are requests too (over unix)
    assert "Calling" not in seen, seen
    assert t.d.docker("ps", "-aq").stdout.strip() == ""
    events = t.d.past_events(f"{since:.3f}").strip()
    assert events == "", events


# ------------------------------------------------------------------------------- docker CLI
def test_docker_cli_with_tls_flags(tlsd: TlsDaemon):
    info = json.loads(tlsd.docker(*tlsd.tls_flags(), "-H", tlsd.url, "info", "--format", "{{json .}}").stdout)
    assert info["DockerRootDir"] == str(tlsd.d.data_root) and info["Images"] == 1
    out = tlsd.docker(*tlsd.tls_flags(), "-H", tlsd.url, "run", "--rm", "busybox", "echo", "hi")
    assert out.stdout == "hi\n"
    assert "Calling POST /v1.41/containers/create" in tlsd.d.log


def test_docker_cli_with_the_environment(tlsd: TlsDaemon):
    env = tlsd.host.client_env(tlsd.url)  # what `dockyard machine env` will print
    assert env["DOCKER_TLS_VERIFY"] == "1" and Path(env["DOCKER_CERT_PATH"], "cert.pem").exists()
    assert tlsd.docker("version", "--format", "{{.Server.APIVersion}}", env=env).stdout.strip() == "1.41"
    assert "Storage Driver: overlay" in tlsd.docker("info", env=env).stdout
    assert tlsd.docker("run", "--rm", "busybox", "echo", "hi", env=env).stdout == "hi\n"


def test_refused_docker_clients_run_nothing(tlsd: TlsDaemon, tmp_path: Path):
    stranger = certs.MachineStore(tmp_path / "stranger", org="mallory").issue_host("local", ["127.0.0.1"])
    expired = certs.make_client_cert(tlsd.store.ensure_ca(), org="dockyard-tests", days=1,
                                     now=dt.datetime.now(dt.UTC) - dt.timedelta(days=2))
    certs.write_pem(tmp_path / "expired.pem", expired.cert_pem(), 0o644)
    certs.write_pem(tmp_path / "expired-key.pem", expired.key_pem(), 0o600)
    refused = {
        "no client certificate": tlsd.tls_flags(cert=False),
        "another CA's certificate": tlsd.tls_flags(stranger.cert, stranger.key),
        "an expired certificate": tlsd.tls_flags(tmp_path / "expired.pem", tmp_path / "expired-key.pem"),
        "plain HTTP": [],
    }
    since, log_before = time.time(), len(tlsd.d.log)
    for what, flags in refused.items():
        res = tlsd.docker(*flags, "-H", tlsd.url, "run", "--rm", "busybox", "echo", "hi", check=False)
        assert res.returncode != 0 and res.stdout == "", f"{what}: {res}"
        assert "error during connect" in res.stderr, f"{what}: {res.stderr}"
    quiet_since(tlsd, since, log_before)
    assert tlsd.d.proc.poll() is None

    assert tlsd.docker(*tlsd.tls_flags(), "-H", tlsd.url, "run", "--rm", "busybox", "echo", "hi").stdout == "hi\n"
    assert "Calling POST /v1.41/containers/create" in tlsd.d.log[log_before:]


def test_the_docker_cli_refuses_a_daemon_of_another_ca(tlsd: TlsDaemon, tmp_path: Path):
    stranger = certs.MachineStore(tmp_path / "stranger", org="mallory").issue_host("local", ["127.0.0.1"])
    res = tlsd.docker("--tlsverify", "--tlscacert", str(stranger.ca), "--tlscert", str(stranger.cert),
                      "--tlskey", str(stranger.key), "-H", tlsd.url, "info", check=False)
    assert res.returncode != 0 and "certificate signed by unknown authority" in res.stderr


# -------------------------------------------------------------------------------- docker-py
@pytest.fixture
def docker_py(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """docker-py, with requests' CA-bundle variables cleared: requests lets them replace the
    session's ``verify`` (docker-py's ``ca_cert``), so the daemon's CA would not be used."""
    for var in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(var, raising=False)
    return pytest.importorskip("docker")


def test_docker_py_with_a_tls_config(tlsd: TlsDaemon, docker_py):
    docker = docker_py
    tls = docker.tls.TLSConfig(client_cert=(str(tlsd.host.cert), str(tlsd.host.key)), ca_cert=str(tlsd.host.ca),
                               verify=True)
    client = docker.DockerClient(base_url=f"https://127.0.0.1:{tlsd.port}", tls=tls, version="auto")
    try:
        assert client.ping() is True
        assert client.info()["DockerRootDir"] == str(tlsd.d.data_root)
        assert client.containers.run("busybox", ["echo", "hi"], remove=True) == b"hi\n"
    finally:
        client.close()


def test_docker_py_from_env(tlsd: TlsDaemon, docker_py):
    docker = docker_py
    client = docker.from_env(environment=tlsd.host.client_env(tlsd.url))
    try:
        assert client.api.base_url == f"https://127.0.0.1:{tlsd.port}"
        assert client.version()["ApiVersion"] == "1.41"
        assert client.containers.run("busybox", "echo hi", remove=True) == b"hi\n"
    finally:
        client.close()


def test_docker_py_without_a_client_certificate_runs_nothing(tlsd: TlsDaemon, docker_py):
    docker = docker_py
    requests = pytest.importorskip("requests")
    since, log_before = time.time(), len(tlsd.d.log)
    tls = docker.tls.TLSConfig(ca_cert=str(tlsd.host.ca), verify=True)
    with pytest.raises((docker.errors.DockerException, requests.exceptions.ConnectionError)):
        client = docker.DockerClient(base_url=f"https://127.0.0.1:{tlsd.port}", tls=tls, version="1.41")
        try:
            client.containers.run("busybox", ["echo", "hi"], remove=True)
        finally:
            client.close()
    quiet_since(tlsd, since, log_before)


# --------------------------------------------------------------------------------- our CLI
def test_our_cli_over_tls_from_the_environment(tlsd: TlsDaemon, tmp_path: Path):
    from dockyard.client import address  # our CLI speaks TLS: no skip may hide it

    assert hasattr(address, "TlsFiles")
    cli = str(Path(sys.executable).parent / "dockyard")
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_"))}

    def dockyard(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, *args], capture_output=True, text=True, timeout=60, env={**base, **env})

    env = tlsd.host.client_env(tlsd.url)
    res = dockyard("info", env=env)
    assert res.returncode == 0, res.stderr
    assert "Storage Driver: overlay" in res.stdout
    res = dockyard("run", "--rm", "busybox", "echo", "hi", env=env)
    assert (res.returncode, res.stdout) == (0, "hi\n"), res.stderr

    ca_only = tmp_path / "ca-only"
    ca_only.mkdir()
    shutil.copy(tlsd.host.ca, ca_only / "ca.pem")
    since, log_before = time.time(), len(tlsd.d.log)
    res = dockyard("run", "--rm", "busybox", "echo", "hi", env={**env, "DOCKER_CERT_PATH": str(ca_only)})
    assert res.returncode != 0 and res.stdout == "" and tlsd.url in res.stderr, res
    quiet_since(tlsd, since, log_before)
