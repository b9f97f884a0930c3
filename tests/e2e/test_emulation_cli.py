"""Foreign Linux architectures under emulation through the real docker CLI (issue 19 item 2):
busybox for arm64 and arm/v7 from Debian's busybox-static (``dockyard image bootstrap busybox
--platform``) runs under qemu-user-static through binfmt_misc handlers with ``F`` (the SDK's
``binfmt_emulation`` fixture makes the missing ones and removes what it made); ``/info`` lists
the emulated platforms, inspect says which platform a container runs and whether emulated, and
an engine without a handler refuses the start naming ``dockyard system binfmt install``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard_plugin_sdk.testing import Daemon

pytestmark = pytest.mark.e2e

if os.geteuid() != 0:
    pytest.skip("the image store's layer drivers need root", allow_module_level=True)
BUSYBOX = Path(os.environ.get("DOCKYARD_BUSYBOX_DIR") or "/var/cache/dockyard/busybox")
if not (BUSYBOX / "arm64" / "busybox").is_file() or not (BUSYBOX / "arm-v7" / "busybox").is_file():
    pytest.skip(f"no foreign busybox in {BUSYBOX}: make install (tools/foreign-busybox.sh)", allow_module_level=True)


@pytest.fixture(scope="module")
def daemon(multiarch_daemon: Daemon) -> Daemon:
    return multiarch_daemon  # tests/e2e/conftest.py: busybox of three platforms, binfmt handlers


@pytest.mark.parametrize(("platform", "machine"), [
    ("linux/arm64", "aarch64"), ("linux/arm/v7", "armv7l"), ("linux/amd64", "x86_64")])
def test_docker_run_platform_uname(daemon: Daemon, platform: str, machine: str) -> None:
    assert daemon.docker("run", "--rm", "--platform", platform, "busybox", "uname", "-m").stdout.strip() == machine


def test_the_tag_is_an_index_of_three_platforms_and_runs_native_by_default(daemon: Daemon) -> None:
    doc = json.loads(daemon.dockyard("image", "inspect", "--platforms", "busybox").stdout)
    plats = sorted("/".join(filter(None, (m["platform"]["os"], m["platform"]["architecture"],
                                          m["platform"].get("variant")))) for m in doc["Manifests"] if m["Present"])
    assert plats == ["linux/amd64", "linux/arm/v7", "linux/arm64"], doc
    assert daemon.docker("run", "--rm", "busybox", "uname", "-m").stdout.strip() == "x86_64"


def test_info_and_inspect_say_emulated(daemon: Daemon) -> None:
    info = daemon.client().get("/info")
    plats = {p["Platform"]: p["Emulated"] for p in info["DockyardPlatforms"]}
    assert plats["linux/amd64"] is False and plats["linux/arm64"] is True and plats["linux/arm/v7"] is True
    cid = daemon.docker("create", "--platform", "linux/arm64", "busybox", "true").stdout.strip()
    try:
        out = json.loads(daemon.docker("inspect", cid).stdout)[0]
        assert out["Platform"] == "linux"
        assert out["DockyardPlatform"] == {"Platform": "linux/arm64", "Emulated": True}
    finally:
        daemon.docker("rm", "-f", cid)


def test_our_info_and_docker_py_platform(daemon: Daemon) -> None:
    lines = daemon.dockyard("info").stdout.splitlines()
    plats = next(line for line in lines if line.startswith("Platforms: "))
    assert "linux/amd64," in plats and "linux/arm64 (emulated)" in plats and "linux/arm/v7 (emulated)" in plats
    docker = pytest.importorskip("docker")
    client = docker.DockerClient(base_url=daemon.host)
    try:
        out = client.containers.run("busybox", ["uname", "-m"], platform="linux/arm/v7", remove=True)
    finally:
        client.close()
    assert out.strip() == b"armv7l"


def test_without_a_handler_the_start_names_the_fix(tmp_path: Path, start_dockyardd: Callable[..., Daemon],
                                                   daemon: Daemon) -> None:
    """An engine whose runtime offers no emulation (``arch-opts emulation=false``: what a host
    without a registration looks like) creates the container, as dockerd does, and refuses
    its start saying how to enable emulation."""
    d = start_dockyardd(tmp_path / "d", config={"arch-opts": ["emulation=false"]})
    try:
        d.dockyard("image", "bootstrap", "armonly", "--platform", "linux/arm64")
        info = d.client().get("/info")
        assert [p["Platform"] for p in info["DockyardPlatforms"]] == ["linux/amd64"]
        proc = d.docker("run", "--rm", "armonly", "true", check=False)
        assert proc.returncode != 0
        assert "image platform linux/arm64 does not run on this host" in proc.stderr
        assert "dockyard system binfmt install" in proc.stderr
    finally:
        d.remove_all_containers()
        assert d.stop() == 0


def test_binfmt_status_cli_lists_the_handlers(daemon: Daemon, binfmt_emulation: dict[str, str]) -> None:
    out = subprocess.run([str(Path(sys.executable).parent / "dockyard"), "system", "binfmt", "status", "--format",
                          "json"], capture_output=True, text=True, check=True).stdout
    rows = {r["Platform"]: r for r in json.loads(out)["Machines"]}
    assert rows["linux/arm64"]["Usable"] and rows["linux/arm64"]["Entry"] == binfmt_emulation["linux/arm64"]
    assert rows["linux/arm/v7"]["Usable"]
