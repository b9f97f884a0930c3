"""Fixtures: one Debian ``docker-registry`` on 127.0.0.1 per module with busybox pushed by skopeo
(from the peers' offline containers-storage copy), key pairs, raw registry helpers for the
hostile tests, and ``trust`` (the CLI, in process)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from dockyard_plugin_sdk.testing import wait_for

REGISTRY_BIN = shutil.which("docker-registry")
SKOPEO = shutil.which("skopeo")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT = ", ".join([OCI_MANIFEST, "application/vnd.oci.image.index.v1+json",
                    "application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json"])


@dataclass
class Registry:
    port: int
    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _req(self, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(f"http://{self.host}{path}", data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def manifest(self, repo: str, ref: str) -> tuple[bytes, str]:
        status, headers, body = self._req("GET", f"/v2/{repo}/manifests/{ref}", headers={"Accept": ACCEPT})
        assert status == 200, (status, body)
        return body, headers.get("Content-Type", "")

    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str = OCI_MANIFEST) -> str:
        status, _h, text = self._req("PUT", f"/v2/{repo}/manifests/{ref}", body, {"Content-Type": media_type})
        assert status == 201, (status, text)
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def blob(self, repo: str, digest: str) -> bytes:
        status, _h, body = self._req("GET", f"/v2/{repo}/blobs/{digest}")
        assert status == 200, (status, body)
        return body

    def put_blob(self, repo: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, headers, _b = self._req("POST", f"/v2/{repo}/blobs/uploads/", b"")
        assert status == 202
        loc = headers["Location"]
        loc = loc if loc.startswith("http") else f"http://{self.host}{loc}"
        sep = "&" if "?" in loc else "?"
        req = urllib.request.Request(f"{loc}{sep}digest={digest}", data=data, method="PUT",
                                     headers={"Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - loopback
            assert resp.status == 201
        return digest

    def skopeo(self, *args: str, check: bool = True, env: dict[str, str] | None = None
               ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([SKOPEO or "skopeo", *args], capture_output=True, text=True, timeout=120,
                              env={**os.environ, **(env or {})})
        if check and proc.returncode != 0:
            raise AssertionError(f"skopeo {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
        return proc


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if REGISTRY_BIN is None or SKOPEO is None:
        pytest.skip("docker-registry and skopeo are needed (make install)")
    root = tmp_path_factory.mktemp("registry")
    port = _free_port()
    (root / "config.yml").write_text(json.dumps({
        "version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}, "delete": {"enabled": True}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "dockyard-test"}}))
    log = open(root / "registry.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([REGISTRY_BIN, "serve", str(root / "config.yml")], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    log.close()

    def listening() -> bool:
        assert proc.poll() is None, (root / "registry.log").read_text()
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True

    reg = Registry(port, root, proc)
    try:
        wait_for(listening, 15, "docker-registry to listen", ignore=(OSError,))
        probe = reg.skopeo("inspect", "containers-storage:docker.io/library/busybox:latest", check=False)
        if probe.returncode != 0:
            pytest.skip("no offline busybox in containers-storage: run bash /work/shared/peers/setup-peers.sh")
        reg.skopeo("copy", "--dest-tls-verify=false", "containers-storage:docker.io/library/busybox:latest",
                   f"docker://{reg.host}/busybox:base")
        yield reg
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Key pairs ``a``, ``b`` and ``c`` (passphrase ``pw``), made by the CLI."""
    d = tmp_path_factory.mktemp("keys")
    for name in ("a", "b", "c"):
        res = run_trust("key", "generate", "--output-key-prefix", str(d / name))
        assert res.exit_code == 0, res.output
    return d


def run_trust(*args: str) -> Result:
    from dockyard_provenance.cli import trust

    return CliRunner().invoke(trust, list(args), env={"COSIGN_PASSWORD": "pw"}, catch_exceptions=False)


@pytest.fixture
def trust() -> Callable[..., Result]:
    return run_trust


@pytest.fixture
def copy_image(registry: Registry) -> Callable[[str], str]:
    """``copy_image("name:tag")``: busybox pushed again as ``name:tag`` with a manifest digest of
    its own; returns the reference ``127.0.0.1:PORT/name:tag``."""
    def copy(dest: str) -> str:
        registry.skopeo("copy", "--src-tls-verify=false", "--dest-tls-verify=false",
                        f"docker://{registry.host}/busybox:base", f"docker://{registry.host}/{dest}")
        # a manifest of its own (an annotation naming it): its own digest, its own signatures
        repo, tag = dest.rsplit(":", 1)
        body, media_type = registry.manifest(repo, tag)
        doc = json.loads(body)
        doc["annotations"] = {"org.example.copy": dest}
        registry.put_manifest(repo, tag, json.dumps(doc).encode(), media_type)
        return f"{registry.host}/{dest}"

    return copy
