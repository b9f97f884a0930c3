"""Cross-platform builds (issue 19 item 3): ``docker build --platform linux/arm64`` runs RUN steps
under emulation with BuildKit's automatic platform args; ``dockyard build --platform
linux/amd64,linux/arm64,linux/arm/v7`` builds one index, ``docker push`` sends it to Debian's
docker-registry on loopback, and it comes back per platform through dockyard (``docker pull
--platform``) and through skopeo (``--override-arch`` into an OCI layout), each with the binary
of its architecture."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon, wait_for

pytestmark = pytest.mark.e2e

if os.geteuid() != 0:
    pytest.skip("the image store's layer drivers need root", allow_module_level=True)
BUSYBOX = Path(os.environ.get("DOCKYARD_BUSYBOX_DIR") or "/var/cache/dockyard/busybox")
if not (BUSYBOX / "arm64" / "busybox").is_file() or not (BUSYBOX / "arm-v7" / "busybox").is_file():
    pytest.skip(f"no foreign busybox in {BUSYBOX}: make install (tools/foreign-busybox.sh)", allow_module_level=True)

DOCKERFILE = """\
FROM busybox
ARG TARGETPLATFORM
ARG TARGETOS
ARG TARGETARCH
ARG TARGETVARIANT
ARG BUILDPLATFORM
ARG BUILDOS
ARG BUILDARCH
RUN echo "$TARGETPLATFORM|$TARGETOS|$TARGETARCH|$TARGETVARIANT|$BUILDPLATFORM|$BUILDOS|$BUILDARCH|$(uname -m)" \
    > /info && cp /bin/busybox /hello
"""
ELF_MACHINE = {"amd64": 0x3E, "arm64": 0xB7, "arm": 0x28}


@pytest.fixture(scope="module")
def daemon(multiarch_daemon: Daemon) -> Daemon:
    return multiarch_daemon  # tests/e2e/conftest.py: busybox of three platforms, binfmt handlers


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text(DOCKERFILE)
    return tmp_path / "ctx"


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1 (a port of its own), removed at teardown."""
    binary = shutil.which("docker-registry")
    if binary is None:
        pytest.skip("docker-registry is not installed")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    root = tmp_path / "registry"
    root.mkdir()
    (root / "config.yml").write_text(json.dumps({
        "version": 0.1, "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "dockyard-test"}}))
    proc = subprocess.Popen([binary, "serve", str(root / "config.yml")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)

    def listening() -> bool:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True

    try:
        wait_for(listening, 15, "docker-registry to listen", ignore=(OSError,))
        yield f"127.0.0.1:{port}"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)


def expected(platform: str, machine: str) -> str:
    os_, arch, *variant = platform.split("/")
    return f"{platform}|{os_}|{arch}|{variant[0] if variant else ''}|linux/amd64|linux|amd64|{machine}"


def test_docker_build_platform_arm64_runs_emulated(daemon: Daemon, context: Path) -> None:
    daemon.docker("build", "--platform", "linux/arm64", "-t", "cross:arm64", str(context), timeout=120)
    fmt = "{{.Os}}/{{.Architecture}}"
    assert daemon.docker("image", "inspect", "--format", fmt, "cross:arm64").stdout.strip() == "linux/arm64"
    out = daemon.docker("run", "--rm", "cross:arm64", "cat", "/info").stdout.strip()
    assert out == expected("linux/arm64", "aarch64")


def _layer_file(oci: Path, name: str) -> bytes:
    """``name`` from the top-most layer of the single image in OCI layout ``oci`` holding it."""
    index = json.loads((oci / "index.json").read_text())
    manifest = json.loads((oci / "blobs" / "sha256" / index["manifests"][0]["digest"][7:]).read_bytes())
    for layer in reversed(manifest["layers"]):
        with tarfile.open(oci / "blobs" / "sha256" / layer["digest"][7:]) as tf:
            try:
                member = tf.extractfile(name)
            except KeyError:
                continue
            if member is not None:
                return member.read()
    raise AssertionError(f"{name} is in no layer of {oci}")


def test_multi_platform_build_push_and_pull_back(daemon: Daemon, context: Path, registry: str,
                                                 tmp_path: Path) -> None:
    name = f"{registry}/cross/multi:1"
    daemon.dockyard("build", "--platform", "linux/amd64,linux/arm64,linux/arm/v7", "-t", name, str(context))
    doc = json.loads(daemon.dockyard("image", "inspect", "--platforms", name).stdout)
    assert sorted((m["platform"]["architecture"], m["platform"].get("variant", "")) for m in doc["Manifests"]) == \
        [("amd64", ""), ("arm", "v7"), ("arm64", "")]
    daemon.docker("push", name)
    daemon.docker("rmi", name)
    # back through dockyard, one platform at a time
    for platform, machine in (("linux/arm/v7", "armv7l"), ("linux/arm64", "aarch64")):
        daemon.docker("pull", "--platform", platform, name)
        out = daemon.docker("run", "--rm", "--platform", platform, name, "cat", "/info").stdout.strip()
        assert out == expected(platform, machine)
    # ... and through skopeo into an OCI layout: the binary is the architecture's
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        pytest.skip("skopeo is not installed")
    for arch, variant in (("arm64", ""), ("arm", "v7"), ("amd64", "")):
        oci = tmp_path / f"oci-{arch}"
        args = ["--override-arch", arch, *(["--override-variant", variant] if variant else []), "copy",
                "--src-tls-verify=false", f"docker://{name}", f"oci:{oci}:1"]
        subprocess.run([skopeo, *args], check=True, capture_output=True, timeout=120)
        head = _layer_file(oci, "hello")[:20]
        assert head[:4] == b"\x7fELF"
        assert int.from_bytes(head[18:20], "little") == ELF_MACHINE[arch], (arch, head)


def test_from_scratch_for_another_platform_is_labelled_so(daemon: Daemon, tmp_path: Path) -> None:
    ctx = tmp_path / "scratch"
    ctx.mkdir()
    (ctx / "hello").write_text("hi\n")
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY hello /hello\n")
    for platform in ("linux/arm/v7", "linux/amd64"):
        tag = "scratchy:" + platform.replace("/", "-")
        daemon.docker("build", "--platform", platform, "-t", tag, str(ctx))
        fmt = "{{.Os}}/{{.Architecture}}{{if .Variant}}/{{.Variant}}{{end}}"
        assert daemon.docker("image", "inspect", "--format", fmt, tag).stdout.strip() == platform
