"""Fixtures: Debian's ``docker-registry`` on 127.0.0.1 (optionally htpasswd + TLS), certificates,
and a real ``dockyardd`` (the plugin SDK's fixtures; vfs storage with DOCKYARD_TEST_STORAGE=vfs)."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon, WaitTimeout, wait_for

if str(Path(__file__).parent) not in sys.path:  # --import-mode=importlib: make fakeregistry importable
    sys.path.insert(0, str(Path(__file__).parent))
REGISTRY_BIN = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Certs:
    ca: Path
    cert: Path
    key: Path


def make_certs(d: Path) -> Certs:
    """A self-signed CA and a server certificate for 127.0.0.1 / localhost signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockyard test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                        x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out = Certs(d / "ca.crt", d / "server.crt", d / "server.key")
    out.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    out.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out.key.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return out


@dataclass
class Registry:
    port: int
    root: Path
    proc: subprocess.Popen[bytes]
    certs: Certs | None = None
    user: str = ""
    password: str = ""

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        return (self.root / "registry.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def wipe(self) -> None:
        """Stop, forget every repository, start again on the same port."""
        self.stop()
        shutil.rmtree(self.root / "data", ignore_errors=True)
        self.proc = _spawn(self.root, self.port, self.certs is not None)

    def skopeo(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        if SKOPEO is None:
            pytest.skip("skopeo is not installed")
        proc = subprocess.run([SKOPEO, *args], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise AssertionError(f"skopeo {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc


def _spawn(root: Path, port: int, tls: bool) -> subprocess.Popen[bytes]:
    log = open(root / "registry.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(root / "config.yml")], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    log.close()

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"docker-registry exited {proc.returncode}:\n"
                                 f"{(root / 'registry.log').read_text(errors='replace')}")
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True

    try:
        wait_for(listening, 15, f"docker-registry to listen on 127.0.0.1:{port}", ignore=(OSError,))
    except WaitTimeout:
        proc.kill()
        proc.wait()
        raise
    return proc


def start_registry(root: Path, *, tls: bool = False, user: str = "", password: str = "") -> Registry:
    if REGISTRY_BIN is None:
        pytest.skip("docker-registry is not installed")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    certs = make_certs(root / "certs") if tls else None
    http: dict[str, object] = {"addr": f"127.0.0.1:{port}", "secret": "dockyard-test"}
    if certs:
        http["tls"] = {"certificate": str(certs.cert), "key": str(certs.key)}
    config: dict[str, object] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
        "http": http,
    }
    if user:
        import bcrypt

        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
        (root / "htpasswd").write_text(f"{user}:{hashed}\n")
        config["auth"] = {"htpasswd": {"realm": "dockyard-test", "path": str(root / "htpasswd")}}
    # JSON is YAML: no YAML library needed.
    (root / "config.yml").write_text(json.dumps(config))
    proc = _spawn(root, port, tls)
    return Registry(port, root, proc, certs, user, password)


@pytest.fixture
def registry_factory(tmp_path: Path) -> Iterator[Callable[..., Registry]]:
    started: list[Registry] = []

    def factory(name: str = "reg", **kw: object) -> Registry:
        r = start_registry(tmp_path / name, **kw)  # type: ignore[arg-type]
        started.append(r)
        return r

    yield factory
    for r in started:
        r.stop()


@pytest.fixture
def registry(registry_factory: Callable[..., Registry]) -> Registry:
    return registry_factory("reg")


@pytest.fixture
def dockyardd(dockyardd_factory: Callable[..., Daemon]) -> Daemon:
    """The SDK's ``dockyardd``, on vfs when DOCKYARD_TEST_STORAGE=vfs."""
    return dockyardd_factory("d", config={"storage-driver": "vfs"} if _vfs_only() else None)


@pytest.fixture(scope="module")
def module_dockyardd(tmp_path_factory: pytest.TempPathFactory,
                     start_dockyardd: Callable[..., Daemon]) -> Iterator[Daemon]:
    """One daemon for a whole module (its tests use distinct names and compare before/after)."""
    d = start_dockyardd(tmp_path_factory.mktemp("dockyardd"),
                        config={"storage-driver": "vfs"} if _vfs_only() else None)
    yield d
    d.teardown()


def _vfs_only() -> bool:
    return os.environ.get("DOCKYARD_TEST_STORAGE") == "vfs"


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310 - 127.0.0.1 only
        return resp.read()


def busybox_to(reg: Registry, dest: str) -> None:
    """Copy the peers' offline busybox (containers-storage) to ``reg`` with skopeo."""
    if SKOPEO is None:
        pytest.skip("skopeo is not installed")
    probe = subprocess.run([SKOPEO, "inspect", "containers-storage:docker.io/library/busybox:latest"],
                           capture_output=True, text=True, timeout=60)
    if probe.returncode != 0:
        pytest.skip("no offline busybox in containers-storage: run bash /work/shared/peers/setup-peers.sh")
    reg.skopeo("copy", "--dest-tls-verify=false", *(["--dest-creds", f"{reg.user}:{reg.password}"] if reg.user else []),
               "containers-storage:docker.io/library/busybox:latest", f"docker://{reg.host}/{dest}")
