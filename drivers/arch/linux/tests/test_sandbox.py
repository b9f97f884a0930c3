"""The Linux driver's network sandboxes beyond the kit's case: a leftover of an earlier run is
replaced, and a namespace bound where dockyard 0.1's engine bound one is removed by its key."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dockyard.model import new_id
from dockyard_arch_linux import sandbox
from dockyard_arch_linux.driver import LinuxRuntime

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def binds_at(path: str) -> int:
    with open("/proc/self/mountinfo") as fh:
        return sum(1 for line in fh if line.split()[4] == path)


@pytest.fixture
async def driver(context):
    drv = LinuxRuntime(context)
    await drv.setup()
    return drv


async def test_a_leftover_sandbox_is_replaced(driver: LinuxRuntime) -> None:
    cid = new_id()
    first = await driver.create_sandbox(cid)
    ino = os.stat(first).st_ino
    again = await driver.create_sandbox(cid)  # a daemon killed mid-start left the first one
    try:
        assert again == first == str(driver.context.run_dir / "netns" / f"{driver.context.owner}-{cid}")
        assert binds_at(again) == 1 and os.stat(again).st_ino != ino
    finally:
        await driver.remove_sandbox(cid, again)
    assert binds_at(again) == 0 and not os.path.exists(again)


async def test_a_namespace_of_dockyard_0_1_is_removed_by_its_key(driver: LinuxRuntime, base_dir: Path) -> None:
    cid = new_id()
    old = base_dir / "exec-root" / "netns" / cid  # where 0.1's engine bound a container's namespace
    sandbox.create(old)
    assert binds_at(str(old)) == 1
    await driver.remove_sandbox(cid, str(old))
    assert binds_at(str(old)) == 0 and not old.exists()


def test_stacked_binds_all_go(base_dir: Path) -> None:
    path = base_dir / "ns"
    sandbox.create(path)
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
    assert binds_at(str(path)) == 2
    sandbox.remove(path)
    assert binds_at(str(path)) == 0 and not path.exists()
