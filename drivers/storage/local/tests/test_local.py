"""What only the local volume driver does: Docker's option rules, persisted refs, reconciliation."""

from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from dockyard.errors import Conflict, InvalidArgument
from dockyard_plugin_sdk.conformance._common import make_context
from dockyard_storage_local.driver import LocalVolumeDriver, _read_mount_points


@pytest_asyncio.fixture
async def driver(tmp_path: Path) -> AsyncIterator[LocalVolumeDriver]:
    drv = LocalVolumeDriver(make_context(tmp_path / "d", owner="dyvol1"))
    await drv.setup()
    try:
        yield drv
    finally:
        await drv.close()
        prefix = str(tmp_path) + "/"
        left = [m for m in _read_mount_points() if m.startswith(prefix)]
        for mp in sorted(left, key=len, reverse=True):
            subprocess.run(["umount", "-l", mp], check=False)
        assert not left, f"test left mounts: {left}"


def source_of(path: str) -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if left.split()[4] == path:
                return right.split()[1]
    return None


@pytest.mark.parametrize("options,match", [
    ({"type": "nfs", "device": ":/export", "o": "addr=1.2.3.4"}, "unsupported volume type"),
    ({"type": "tmpfs", "o": "bind"}, "invalid tmpfs option"),
    ({"type": "tmpfs", "o": "size=1m,exec;rm"}, "invalid tmpfs option"),
    ({"type": "tmpfs", "device": "/dev/sda"}, "invalid tmpfs device"),
    ({"o": "size=1m"}, "need type=tmpfs or o=bind"),
    ({"device": "/srv"}, "need type=tmpfs or o=bind"),
    ({"o": "bind,exec;x", "device": "/tmp"}, "invalid bind option"),
    ({"type": "ext4", "o": "bind", "device": "/tmp"}, "unsupported volume type"),
    ({"size": "1g"}, "invalid option"),
])
async def test_option_rules(driver: LocalVolumeDriver, options: dict[str, str], match: str) -> None:
    with pytest.raises(InvalidArgument, match=match):
        await driver.create("v1", options)
    assert await driver.list() == []


async def test_recreate_with_other_options_is_a_conflict(driver: LocalVolumeDriver) -> None:
    await driver.create("v1", {"type": "tmpfs", "o": "size=1m"})
    assert await driver.options("v1") == {"type": "tmpfs", "o": "size=1m"}
    with pytest.raises(Conflict):
        await driver.create("v1", {})


async def test_refs_are_persisted_per_container(driver: LocalVolumeDriver) -> None:
    await driver.create("v1", {})
    await driver.mount("v1", "aaa")
    await driver.mount("v1", "aaa")
    await driver.mount("v1", "bbb")
    refs_file = driver.context.data_dir / "volumes" / "v1" / "refs.json"
    assert json.loads(refs_file.read_text()) == {"aaa": 2, "bbb": 1}
    assert await driver.references("v1") == {"aaa": 2, "bbb": 1}
    await driver.unmount("v1", "unknown-container")  # holds nothing: a no-op
    await driver.unmount("v1", "aaa")
    await driver.unmount("v1", "aaa")
    await driver.unmount("v1", "bbb")
    assert json.loads(refs_file.read_text()) == {}


async def test_tmpfs_source_names_the_daemon(driver: LocalVolumeDriver) -> None:
    await driver.create("tv", {"type": "tmpfs"})
    m = await driver.mount("tv", "c")
    try:
        assert source_of(m.path) == "dockyard-dyvol1"
        assert await driver.usage("tv") == 0
    finally:
        await driver.unmount("tv", "c")
    assert await driver.usage("tv") == -1


async def test_read_only_bind(driver: LocalVolumeDriver, tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    await driver.create("ro", {"o": "bind,ro", "device": str(dev)})
    m = await driver.mount("ro", "c")
    try:
        with pytest.raises(OSError) as info:
            (Path(m.path) / "x").write_bytes(b"x")
        assert info.value.errno == errno.EROFS
    finally:
        await driver.unmount("ro", "c")


async def test_setup_reconciles_mounts(driver: LocalVolumeDriver) -> None:
    await driver.create("stale", {"type": "tmpfs"})
    await driver.create("lost", {"type": "tmpfs"})
    stale = await driver.mount("stale", "c1")
    lost = await driver.mount("lost", "c2")
    vols = driver.context.data_dir / "volumes"
    (vols / "stale" / "refs.json").write_text("{}")  # crashed after the container went away
    subprocess.run(["umount", lost.path], check=True)  # e.g. a reboot: c2 still recorded
    (vols / ".tmp-half-created").mkdir()
    await LocalVolumeDriver(driver.context).setup()
    mounted = _read_mount_points()
    assert stale.path not in mounted
    assert lost.path in mounted
    assert not (vols / ".tmp-half-created").exists()
    await driver.unmount("lost", "c2")
    assert lost.path not in _read_mount_points()


async def test_setup_survives_a_volume_it_cannot_remount(driver: LocalVolumeDriver, tmp_path: Path) -> None:
    dev = tmp_path / "dev"
    dev.mkdir()
    await driver.create("gone-device", {"o": "bind", "device": str(dev)})
    m = await driver.mount("gone-device", "c1")
    subprocess.run(["umount", m.path], check=True)
    dev.rmdir()  # the host directory vanished while the daemon was down
    await driver.create("fine", {})
    fresh = LocalVolumeDriver(driver.context)
    await fresh.setup()
    assert await fresh.list() == ["fine", "gone-device"]
    assert any(k == "Volume gone-device" for k, _v in fresh.status())
    await fresh.unmount("gone-device", "c1")
    await fresh.remove("gone-device")


def test_entry_point_loads_through_the_registry() -> None:
    from dockyard.registry import Registry

    registry = Registry()
    registry.scan()
    assert registry.load_driver("volume", "local") is LocalVolumeDriver
