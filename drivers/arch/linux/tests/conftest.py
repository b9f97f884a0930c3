from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from dockyard.errors import NotFound
from dockyard_arch_linux.driver import LinuxRuntime
from dockyard_plugin_sdk.conformance.arch import busybox_rootfs, leftovers, make_runtime_context

NEEDS_HOST = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("conmon") or not shutil.which("crun"),
    reason="needs root, conmon and crun")


@pytest.fixture
def base_dir():
    base = Path(tempfile.mkdtemp(prefix="dy", dir="/tmp"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def owner() -> str:
    return "dyt" + os.urandom(4).hex()


@pytest.fixture
def context(base_dir, owner):
    return make_runtime_context(base_dir, owner)


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = busybox_rootfs(tmp_path / "rootfs")
    for applet in ("stty", "touch", "df", "grep", "mount", "ls"):
        if not (root / "bin" / applet).exists():
            (root / "bin" / applet).symlink_to("busybox")
    return root


@pytest.fixture
async def driver(context):
    drv = LinuxRuntime(context)
    await drv.setup()
    return drv


@pytest.fixture(autouse=True)
def zombies_before() -> frozenset[str]:
    """Zombies already re-parented to this process when the test starts. The driver makes its
    process a child subreaper, so in a long pytest session orphans of other suites (podman's
    conmon, aardvark-dns) end up here too; only zombies that appear during a test are its own."""
    return frozenset(zombie_children())


@pytest.fixture
async def ids(driver, zombies_before):
    """Container IDs a test creates: force-removed afterwards, then nothing may be left."""
    created: list[str] = []
    yield created
    for cid in created:
        try:
            await driver.delete(cid, force=True)
        except NotFound:
            pass
    left = leftovers(driver.context.owner, driver.context.run_dir) + zombie_children(zombies_before)
    assert not left, f"left behind: {left}"


def zombie_children(baseline: frozenset[str] = frozenset()) -> list[str]:
    """Exited children of this process nobody reaped (conmon is re-parented to us), except
    those in ``baseline``."""
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        tail = stat[stat.rindex(")") + 2:].split()
        if tail[0] == "Z" and int(tail[1]) == os.getpid():
            found.append(f"zombie {pid} {stat[stat.index('('):stat.rindex(')') + 1]}")
    return [z for z in found if z not in baseline]
