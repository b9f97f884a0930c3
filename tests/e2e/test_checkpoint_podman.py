"""Portable checkpoint archives between podman 4.3 and dockyardd (issue 17 item 3), both ways:
``podman container checkpoint --export`` restored with ``dockyard container restore --import``
and ``dockyard container checkpoint --export`` restored with ``podman container restore
--import``. A container counting in memory goes on from where it stopped, and the writable
layer's changes travel. Both sides use the same image (podman's busybox, loaded into
dockyardd): only the writable layer is in an archive."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon, wait_for
from tests.e2e.test_run_cli import stop_and_check

CRIU_DIR = "/opt/criu/sbin"
IMAGE = "localhost/busybox"
COUNTER = "echo made > /made; i=0; while true; do i=$((i+1)); echo $i; sleep 0.1; done"

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("docker") or not shutil.which("podman")
                                 or not shutil.which("runc"), reason="needs root, the docker CLI, podman and runc"),
              pytest.mark.skipif(not os.access(f"{CRIU_DIR}/criu", os.X_OK), reason="needs CRIU 4.x (make install)")]
sdk_net = pytest.importorskip("dockyard_plugin_sdk.conformance.network")


def podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    # podman's runc finds CRIU on PATH: bookworm's 3.17 must not be the one
    env = dict(os.environ, PATH=f"{CRIU_DIR}:{os.environ.get('PATH', '')}")
    res = subprocess.run(["podman", *args], capture_output=True, text=True, env=env, timeout=120, check=False)
    if check and res.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {res.stderr}")
    return res


def numbers(text: str) -> list[int]:
    return [int(w) for w in text.split() if w.isdigit()]


def network_leftovers(root: Path, owner: str) -> list[str]:
    """The network objects named after the daemon's owner and its netns files (this module
    checks no more than that)."""
    netns = root / "run" / "netns"
    return sdk_net.leftovers(owner) + ([f"netns {p}" for p in netns.iterdir()] if netns.exists() else [])


@pytest.fixture(scope="module")
def d(start_dockyardd: Callable[..., Daemon], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    if podman("image", "exists", IMAGE, check=False).returncode != 0:
        pytest.skip(f"podman has no {IMAGE} (make peers makes it)")
    pool = sdk_net.free_test_subnet("10.213.0.0/17", prefixlen=20)
    root = Path(f"/tmp/dyp-{os.urandom(3).hex()}")
    daemon = start_dockyardd(root, config={"default-address-pools": f"{pool}:24", "experimental": True})
    try:
        image = tmp_path_factory.mktemp("img") / "busybox.tar"
        podman("save", "-o", str(image), IMAGE)
        daemon.docker("load", "-i", str(image))
        yield daemon
    finally:
        try:
            stop_and_check(daemon, network_leftovers)
        finally:
            shutil.rmtree(root, ignore_errors=True)


def test_a_podman_archive_restores_on_dockyard(d: Daemon, tmp_path: Path) -> None:
    name = f"dyp-{os.urandom(3).hex()}"
    archive = tmp_path / "podman.tar.zst"
    podman("run", "-d", "--name", name, "--runtime", "runc", IMAGE, "sh", "-c", COUNTER)
    try:
        wait_for(lambda: len(numbers(podman("logs", name).stdout)) >= 3, 10, "podman's counter")
        podman("container", "checkpoint", "--export", str(archive), name)  # zstd, podman's default
        last = max(numbers(podman("logs", name).stdout))
    finally:
        podman("rm", "-f", name, check=False)
    cid = d.dockyard("container", "restore", "--import", str(archive), "--name", "from-podman").stdout.strip()
    assert d.docker("inspect", "-f", "{{.Id}} {{.State.Status}} {{.HostConfig.Runtime}}", "from-podman").stdout == \
        f"{cid} running runc\n"
    wait_for(lambda: len(numbers(d.docker("logs", "from-podman").stdout)) >= 3, 10, "the restored counter")
    after = numbers(d.docker("logs", "from-podman").stdout)
    assert after[0] == last + 1, (last, after)  # the count went on from podman's memory
    assert d.docker("exec", "from-podman", "cat", "/made").stdout == "made\n"
    d.docker("rm", "-f", "from-podman")


def test_a_dockyard_archive_restores_on_podman(d: Daemon, tmp_path: Path) -> None:
    archive = tmp_path / "dockyard.tar.gz"
    d.docker("run", "-d", "--name", "to-podman", "--runtime", "runc", IMAGE, "sh", "-c", COUNTER)
    wait_for(lambda: len(numbers(d.docker("logs", "to-podman").stdout)) >= 3, 10, "our counter")
    d.dockyard("container", "checkpoint", "--export", str(archive), "to-podman")
    last = max(numbers(d.docker("logs", "to-podman").stdout))
    assert d.docker("inspect", "-f", "{{.State.Status}}", "to-podman").stdout == "exited\n"
    name = f"dyp-{os.urandom(3).hex()}"
    try:
        podman("container", "restore", "--import", str(archive), "--name", name)
        wait_for(lambda: len(numbers(podman("logs", name).stdout)) >= 3, 10, "podman's restored counter")
        after = numbers(podman("logs", name).stdout)
        assert after[0] == last + 1, (last, after)
        assert podman("exec", name, "cat", "/made").stdout == "made\n"
    finally:
        podman("rm", "-f", name, check=False)
    # and back here from the same archive (a second copy: new addresses)
    d.dockyard("container", "restore", "--import", str(archive), "--name", "again", "--ignore-static-ip")
    assert d.docker("inspect", "-f", "{{.State.Status}}", "again").stdout == "running\n"
    d.docker("rm", "-f", "to-podman", "again")
