"""What only the vfs driver does: full copies, no mounts, tree-compare diffs."""

from __future__ import annotations

import os
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from dockyard.errors import Conflict, InvalidArgument
from dockyard_plugin_sdk.conformance._common import make_context
from dockyard_plugin_sdk.conformance.storage import layer_entry, make_layer_tar
from dockyard_storage_vfs.driver import VfsDriver, _layer_id


def mountinfo() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


@pytest_asyncio.fixture
async def driver(tmp_path: Path) -> AsyncIterator[VfsDriver]:
    drv = VfsDriver(make_context(tmp_path / "d"))
    await drv.setup()
    try:
        yield drv
    finally:
        await drv.close()


def names(path: Path) -> list[str]:
    with tarfile.open(path) as tf:
        return sorted(tf.getnames())


async def test_mount_is_the_layer_directory(driver: VfsDriver, tmp_path: Path) -> None:
    await driver.apply("base", None, make_layer_tar(tmp_path / "t.tar", layer_entry("f", data=b"f")))
    before = mountinfo()
    path = await driver.mount("base")
    assert path == str(driver.context.data_dir / "layers" / _layer_id("base") / "root")
    assert mountinfo() == before
    await driver.unmount("base")


async def test_layers_are_independent_copies(driver: VfsDriver, tmp_path: Path) -> None:
    tar = make_layer_tar(tmp_path / "t.tar", layer_entry("f", data=b"f", xattrs={"user.k": "v"}, uid=5),
                         layer_entry("h", "link", link="f"))
    await driver.apply("base", None, tar)
    await driver.prepare("rw", "base")
    rw = Path(await driver.mount("rw"))
    base = driver.context.data_dir / "layers" / _layer_id("base") / "root"
    try:
        assert os.lstat(rw / "f").st_ino == os.lstat(rw / "h").st_ino != os.lstat(base / "f").st_ino
        assert os.getxattr(rw / "f", "user.k") == b"v" and os.lstat(rw / "f").st_uid == 5
        (rw / "f").write_bytes(b"changed")
        os.unlink(rw / "h")
    finally:
        await driver.unmount("rw")
    assert (base / "f").read_bytes() == b"f" and (base / "h").exists()


async def test_content_change_with_same_size_and_mtime_is_seen(driver: VfsDriver, tmp_path: Path) -> None:
    tar = make_layer_tar(tmp_path / "t.tar", layer_entry("same", data=b"aaaa"), layer_entry("other", data=b"o"))
    await driver.apply("base", None, tar)
    await driver.prepare("rw", "base")
    rw = Path(await driver.mount("rw"))
    try:
        st = os.stat(rw / "same")
        (rw / "same").write_bytes(b"bbbb")
        os.utime(rw / "same", ns=(st.st_atime_ns, st.st_mtime_ns))
        os.utime(rw / "other", ns=(os.stat(rw / "other").st_atime_ns, os.stat(rw / "other").st_mtime_ns))
    finally:
        await driver.unmount("rw")
    out = tmp_path / "diff.tar"
    await driver.diff("rw", str(out))
    assert names(out) == ["same"]  # "other" was touched but is identical


async def test_type_changes(driver: VfsDriver, tmp_path: Path) -> None:
    tar = make_layer_tar(tmp_path / "t.tar", layer_entry("was-file", data=b"x"),
                         layer_entry("was-dir", "dir"), layer_entry("was-dir/child", data=b"c"))
    await driver.apply("base", None, tar)
    await driver.prepare("rw", "base")
    rw = Path(await driver.mount("rw"))
    try:
        os.unlink(rw / "was-file")
        (rw / "was-file").mkdir()
        (rw / "was-file" / "inside").write_bytes(b"i")
        (rw / "was-dir" / "child").unlink()
        (rw / "was-dir").rmdir()
        os.symlink("elsewhere", rw / "was-dir")
    finally:
        await driver.unmount("rw")
    out = tmp_path / "diff.tar"
    await driver.diff("rw", str(out))
    assert names(out) == ["was-dir", "was-file", "was-file/inside"]
    await driver.apply("again", "base", str(out))
    again = Path(await driver.mount("again"))
    try:
        assert os.readlink(again / "was-dir") == "elsewhere"
        assert (again / "was-file" / "inside").read_bytes() == b"i"
    finally:
        await driver.unmount("again")


async def test_remove_while_mounted_is_a_conflict(driver: VfsDriver) -> None:
    await driver.prepare("rw", None)
    await driver.mount("rw")
    with pytest.raises(Conflict, match="mounted"):
        await driver.remove("rw")
    await driver.unmount("rw")
    await driver.remove("rw")


async def test_setup_sweeps_interrupted_work(driver: VfsDriver) -> None:
    layers = driver.context.data_dir / "layers"
    (layers / ".tmp-half-copied" / "root").mkdir(parents=True)
    (layers / ".trash-x").mkdir()
    await VfsDriver(driver.context).setup()
    assert os.listdir(layers) == []


async def test_unknown_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="size"):
        await VfsDriver(make_context(tmp_path, size="1G")).setup()


class _LiteralWhiteouts(VfsDriver):
    """A broken driver: extracts whiteout entries as plain files."""

    def _create(self, key, parent, kind, tar_path):  # type: ignore[no-untyped-def]
        from dockyard import tarsafe

        real = tarsafe.extract

        def literal(tar, root, **kw):  # type: ignore[no-untyped-def]
            kw["whiteouts"] = None
            return real(tar, root, **kw)

        tarsafe.extract = literal  # type: ignore[assignment]
        try:
            return super()._create(key, parent, kind, tar_path)
        finally:
            tarsafe.extract = real  # type: ignore[assignment]


class _NoWhiteoutsInDiff(VfsDriver):
    """A broken driver: forgets deletions when diffing."""

    def _changes(self, key):  # type: ignore[no-untyped-def]
        adds, _whiteouts, root = super()._changes(key)
        return adds, set(), root


@pytest.mark.parametrize("broken,case", [
    (_LiteralWhiteouts, "test_stacked_whiteouts_and_opaque_dirs"),
    (_NoWhiteoutsInDiff, "test_diff_of_a_container"),
    (_NoWhiteoutsInDiff, "test_diff_reapplies_to_the_same_view"),
])
async def test_the_kit_catches_broken_drivers(tmp_path: Path, broken: type[VfsDriver], case: str) -> None:
    from dockyard_plugin_sdk.conformance.storage import StorageContract

    drv = broken(make_context(tmp_path / "d"))
    await drv.setup()
    work = tmp_path / "work"
    work.mkdir()
    with pytest.raises(AssertionError):
        await getattr(StorageContract(), case)(drv, work)


def test_entry_point_loads_through_the_registry() -> None:
    from dockyard.registry import Registry

    registry = Registry()
    registry.scan()
    assert registry.load_driver("storage", "vfs") is VfsDriver
