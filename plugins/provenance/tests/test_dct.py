"""Docker Content Trust still works: the real docker CLI with ``DOCKER_CONTENT_TRUST=1`` against
dockyardd, Debian's ``docker-registry`` and Debian's notary (``notary-server`` with a remote
``notary-signer`` over mutual TLS, a test CA): ``docker push`` signs the tag, ``docker pull``
of the signed tag resolves it through notary and pulls by digest, and the pull of a tag nobody
signed is refused by the CLI. Exercises our pull-by-digest, push ``aux`` and tag paths."""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import wait_for

NOTARY_SERVER = shutil.which("notary-server")
NOTARY_SIGNER = shutil.which("notary-signer")
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="dockyardd needs root"),
              pytest.mark.skipif(not (NOTARY_SERVER and NOTARY_SIGNER),
                                 reason="Debian's notary package (notary-server, notary-signer) is not installed")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _certs(d: Path) -> None:
    """A test CA, the server's and the signer's certificates (127.0.0.1) and a client one."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dockyard test CA")])

    def builder(name: x509.Name, pub: object) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder().subject_name(name).issuer_name(ca_name).public_key(pub)  # type: ignore[arg-type]
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1)))

    ca = (builder(ca_name, ca_key.public_key())
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True).sign(ca_key, hashes.SHA256()))
    (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for name in ("server", "signer", "client"):
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"notary-{name}")]), key.public_key())
                .add_extension(x509.SubjectAlternativeName([x509.DNSName(f"notary-{name}"),
                                                            x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                               critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .sign(ca_key, hashes.SHA256()))
        (d / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (d / f"{name}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))


@pytest.fixture
def notary(tmp_path: Path) -> Iterator[str]:
    """notary-signer (gRPC, mutual TLS, memory store) and notary-server (HTTPS, memory store,
    the signer as its trust service); yields the server's URL."""
    d = tmp_path / "notary"
    d.mkdir()
    _certs(d)
    sport, hport = _free_port(), _free_port()
    (d / "signer.json").write_text(json.dumps({
        "server": {"grpc_addr": f"127.0.0.1:{sport}", "tls_cert_file": str(d / "signer.crt"),
                   "tls_key_file": str(d / "signer.key"), "client_ca_file": str(d / "ca.crt")},
        "logging": {"level": "warn"}, "storage": {"backend": "memory"}}))
    (d / "server.json").write_text(json.dumps({
        "server": {"http_addr": f"127.0.0.1:{hport}", "tls_cert_file": str(d / "server.crt"),
                   "tls_key_file": str(d / "server.key")},
        "trust_service": {"type": "remote", "hostname": "127.0.0.1", "port": str(sport), "key_algorithm": "ecdsa",
                          "tls_ca_file": str(d / "ca.crt"), "tls_client_cert": str(d / "client.crt"),
                          "tls_client_key": str(d / "client.key")},
        "logging": {"level": "warn"}, "storage": {"backend": "memory"}}))
    procs = []
    try:
        ctx = ssl.create_default_context(cafile=str(d / "ca.crt"))
        for binary, conf in ((NOTARY_SIGNER, "signer.json"), (NOTARY_SERVER, "server.json")):
            log = open(d / conf.replace(".json", ".log"), "ab")  # noqa: SIM115 - handed to the child
            procs.append(subprocess.Popen([str(binary), "-config", str(d / conf)], stdout=log, stderr=subprocess.STDOUT,
                                          start_new_session=True))
            log.close()
            if binary == NOTARY_SIGNER:
                # notary-server dials the signer once at start; a refused dial leaves its gRPC channel
                # in backoff, and the first signing request then fails with a 500 (seen in CI under load).
                def listening() -> bool:
                    assert procs[0].poll() is None, (d / "signer.log").read_text()
                    with socket.create_connection(("127.0.0.1", sport), timeout=1):
                        return True

                wait_for(listening, 15, "notary-signer to listen", ignore=(OSError,))

        def healthy() -> bool:
            for p in procs:
                assert p.poll() is None, (d / "server.log").read_text() + (d / "signer.log").read_text()
            import urllib.request

            with urllib.request.urlopen(f"https://127.0.0.1:{hport}/_notary_server/health",  # noqa: S310
                                        context=ctx, timeout=1) as resp:
                return bool(resp.status == 200)

        wait_for(healthy, 15, "notary-server to answer", ignore=(OSError,))
        yield f"https://127.0.0.1:{hport}"
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def test_content_trust_push_pull_and_unsigned_refused(registry, notary: str, dockyardd_factory: Callable,
                                                      tmp_path: Path) -> None:
    d = dockyardd_factory("d")
    d.client().post("/dockyard/images/bootstrap")
    config = tmp_path / "docker-config"
    certs = config / "tls" / notary.removeprefix("https://")
    certs.mkdir(parents=True)
    shutil.copy(tmp_path / "notary" / "ca.crt", certs / "ca.crt")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "DOCKER_CONFIG": str(config),
           "DOCKER_CONTENT_TRUST": "1", "DOCKER_CONTENT_TRUST_SERVER": notary,
           "DOCKER_CONTENT_TRUST_ROOT_PASSPHRASE": "root-pw", "DOCKER_CONTENT_TRUST_REPOSITORY_PASSPHRASE": "repo-pw"}

    def docker(*args: str, trust: bool = True, check: bool = True) -> subprocess.CompletedProcess[str]:
        e = dict(env) if trust else {k: v for k, v in env.items() if not k.startswith("DOCKER_CONTENT_TRUST")}
        res = subprocess.run(["docker", "-H", d.host, *args], capture_output=True, text=True, env=e, timeout=120)
        if check and res.returncode != 0:
            logs = "".join(f"\n--- notary-{n}.log:\n" + (tmp_path / "notary" / f"{n}.log").read_text(errors="replace")
                           for n in ("server", "signer"))
            raise AssertionError(f"docker {' '.join(args)} exited {res.returncode}:\n{res.stdout}\n{res.stderr}{logs}")
        return res

    signed, unsigned = f"{registry.host}/trusted:1", f"{registry.host}/trusted:2"
    docker("tag", "busybox", signed, trust=False)
    docker("tag", "busybox", unsigned, trust=False)
    out = docker("push", signed)
    assert "Signing and pushing trust metadata" in out.stdout + out.stderr, out
    docker("push", unsigned, trust=False)  # pushed without content trust: no trust data
    docker("rmi", signed, unsigned, trust=False)

    out = docker("pull", signed)
    digest = "sha256:" + hashlib.sha256(registry.manifest("trusted", "1")[0]).hexdigest()
    assert f"Pull (1 of 1): {signed}@{digest}" in out.stdout, out  # the tag notary signed
    assert f"Tagging {registry.host}/trusted@{digest} as {signed}" in out.stdout + out.stderr, out
    assert signed in docker("images", "--format", "{{.Repository}}:{{.Tag}}", trust=False).stdout.split()

    out = docker("pull", unsigned, check=False)
    assert out.returncode != 0, out
    assert "No valid trust data for 2" in out.stderr or "does not have trust data" in out.stderr, out.stderr
    assert unsigned not in docker("images", "--format", "{{.Repository}}:{{.Tag}}", trust=False).stdout.split()
