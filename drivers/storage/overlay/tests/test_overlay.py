"""What only the overlay driver does: overlay whiteouts on disk, named mounts, reconciliation."""

from __future__ import annotations

import errno
import os
import stat
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from dockyard.errors import Conflict, InvalidArgument
from dockyard_plugin_sdk.conformance._common import make_context
from dockyard_plugin_sdk.conformance.storage import layer_entry, make_layer_tar
from dockyard_storage_overlay.driver import OverlayDriver, _layer_id, read_mounts


def mounts_under(path: Path) -> list[tuple[str, str, str]]:
    prefix = str(path) + "/"
    return [m for m in read_mounts() if m[0].startswith(prefix)]


def force_unmount_all(path: Path) -> None:
    for mp, _t, _s in sorted(mounts_under(path), key=lambda m: len(m[0]), reverse=True):
        subprocess.run(["umount", "-l", mp], check=False)


@pytest_asyncio.fixture
async def driver(tmp_path: Path) -> AsyncIterator[OverlayDriver]:
    drv = OverlayDriver(make_context(tmp_path / "d", owner="dyovl1"))
    await drv.setup()
    try:
        yield drv
    finally:
        await drv.close()
        left = mounts_under(tmp_path)
        force_unmount_all(tmp_path)
        assert not left, f"test left mounts: {left}"


def simple_tar(tmp_path: Path, name: str = "t.tar", *entries: object) -> str:
    return make_layer_tar(tmp_path / name, *(entries or (layer_entry("f", data=b"f"),)))  # type: ignore[arg-type]


async def test_whiteouts_stored_the_overlay_way(driver: OverlayDriver, tmp_path: Path) -> None:
    await driver.apply("base", None, simple_tar(tmp_path))
    tar = make_layer_tar(tmp_path / "w.tar", layer_entry(".wh.f"), layer_entry("o", "dir"),
                         layer_entry("o/.wh..wh..opq"))
    await driver.apply("top", "base", tar)
    diff = driver.context.data_dir / "layers" / _layer_id("top") / "diff"
    st = os.lstat(diff / "f")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(diff / "o", "trusted.overlay.opaque") == b"y"
    assert not (diff / ".wh.f").exists()


async def test_mounts_are_named_and_made_by_mount_2_when_they_fit(driver: OverlayDriver, tmp_path: Path) -> None:
    await driver.apply("base", None, simple_tar(tmp_path))
    await driver.prepare("rw", "base")
    flags, data = driver._direct_options(driver._read_meta("rw"))
    assert flags == 0 and data.startswith(f"lowerdir={driver._root}/l/".encode())
    assert f",upperdir={driver._root}/layers/".encode() in data
    assert driver._direct_options(driver._read_meta("base"))[0] == 1  # MS_RDONLY: "ro" is no overlay option
    path = await driver.mount("rw")
    try:
        found = [m for m in read_mounts() if m[0] == path]
        assert found == [(path, "overlay", "dockyard-dyovl1")]
        with open("/proc/self/mountinfo") as f:
            line = next(x for x in f if f" {path} " in x)
        assert "lowerdir=" in line or "lowerdir" not in line  # kernels may hide options
    finally:
        await driver.unmount("rw")
    assert mounts_under(tmp_path) == []


async def test_read_only_layers_mount_read_only(driver: OverlayDriver, tmp_path: Path) -> None:
    await driver.apply("base", None, simple_tar(tmp_path))
    path = Path(await driver.mount("base"))
    try:
        assert (path / "f").read_bytes() == b"f"
        with pytest.raises(OSError) as info:
            (path / "new").write_bytes(b"x")
        assert info.value.errno == errno.EROFS
    finally:
        await driver.unmount("base")


async def test_remove_while_mounted_is_a_conflict(driver: OverlayDriver, tmp_path: Path) -> None:
    await driver.prepare("rw", None)
    await driver.mount("rw")
    try:
        with pytest.raises(Conflict, match="mounted"):
            await driver.remove("rw")
    finally:
        await driver.unmount("rw")
    await driver.remove("rw")
    assert os.listdir(driver.context.data_dir / "l") == []


async def test_deep_chain_stays_under_the_option_limit(driver: OverlayDriver, tmp_path: Path) -> None:
    parent = None
    for i in range(100):
        key = f"layer-{i:03d}"
        tar = make_layer_tar(tmp_path / f"{i}.tar", layer_entry(f"file{i:03d}", data=str(i).encode()))
        await driver.apply(key, parent, tar)
        parent = key
    await driver.prepare("ctr", parent)
    assert driver._direct_options(driver._read_meta("ctr")) is None  # beyond a page: mount(8), relative paths
    root = Path(await driver.mount("ctr"))
    try:
        assert len(os.listdir(root)) == 100
        assert (root / "file000").read_bytes() == b"0" and (root / "file099").read_bytes() == b"99"
    finally:
        await driver.unmount("ctr")


async def test_setup_reconciles_a_previous_run(driver: OverlayDriver, tmp_path: Path) -> None:
    await driver.apply("base", None, simple_tar(tmp_path))
    await driver.prepare("rw", "base")
    path = await driver.mount("rw")  # the "previous daemon" crashes with this mounted
    data = driver.context.data_dir
    (data / "layers" / ".tmp-crashed-apply").mkdir()
    os.symlink("../layers/gone/diff", data / "l" / "DANGLING")
    foreign = data / "foreign"
    foreign.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "dockyard-someone-else", str(foreign)], check=True)
    try:
        fresh = OverlayDriver(driver.context)
        await fresh.setup()
        assert [m for m in read_mounts() if m[0] == path] == []
        assert not (data / "layers" / ".tmp-crashed-apply").exists()
        assert not os.path.lexists(data / "l" / "DANGLING")
        assert [m for m in read_mounts() if m[0] == str(foreign)], "another owner's mount was touched"
        again = await fresh.mount("rw")  # and the layers still work
        assert (Path(again) / "f").read_bytes() == b"f"
        await fresh.setup()  # idempotent: does not unmount its own live mount
        assert [m for m in read_mounts() if m[0] == again]
        await fresh.unmount("rw")
    finally:
        subprocess.run(["umount", str(foreign)], check=False)
    driver._refs.clear()  # the crashed instance's bookkeeping


async def test_failed_apply_leaves_no_link(driver: OverlayDriver, tmp_path: Path) -> None:
    bad = make_layer_tar(tmp_path / "bad.tar", layer_entry("../x", data=b"x"))
    with pytest.raises(InvalidArgument):
        await driver.apply("bad", None, bad)
    data = driver.context.data_dir
    assert os.listdir(data / "l") == []
    assert [n for n in os.listdir(data / "layers")] == []


async def test_unknown_options_are_refused(tmp_path: Path) -> None:
    drv = OverlayDriver(make_context(tmp_path, size="10G"))
    with pytest.raises(InvalidArgument, match="size"):
        await drv.setup()


def test_status(tmp_path: Path) -> None:
    drv = OverlayDriver(make_context(tmp_path))
    status = dict(drv.status())
    assert status["Backing Filesystem"] != "" and status["Layers"] == "0"


def test_entry_point_loads_through_the_registry() -> None:
    from dockyard.registry import Registry

    registry = Registry()
    registry.scan()
    assert registry.load_driver("storage", "overlay") is OverlayDriver
