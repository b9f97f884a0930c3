"""dockyard.layerdirs: what directory-per-layer drivers share, through a minimal driver."""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import pytest_asyncio

from dockyard import tarsafe
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.layerdirs import DirectoryLayerDriver, LayerMeta, layer_id, remove_leftovers, tree_size
from dockyard.specs import DriverContext, DriverInfo
from dockyard.specs.storage import LayerInfo


@dataclass
class _Meta(LayerMeta):
    note: str = ""


class ToyDriver(DirectoryLayerDriver[_Meta]):
    """Each layer holds only its own files; "mounting" is recorded; extras live in ``extras/``."""

    info: ClassVar[DriverInfo] = DriverInfo(name="toy", kind="storage", description="test driver")
    meta_class = _Meta
    whiteouts = tarsafe.DeleteWhiteouts()

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self.calls: list[str] = []
        self.fail_mount = False

    def _new_meta(self, key: str, parent: str | None, kind: str) -> _Meta:
        meta = super()._new_meta(key, parent, kind)
        meta.note = f"made {kind}"
        return meta

    def _populate(self, tmp: Path, meta: _Meta) -> Path:
        (self._root / "extras").mkdir(exist_ok=True)
        (self._root / "extras" / layer_id(meta.key)).touch()
        (tmp / "files").mkdir()
        return tmp / "files"

    def _remove_extras(self, meta: _Meta) -> None:
        self.calls.append(f"extras {meta.key}")
        (self._root / "extras" / layer_id(meta.key)).unlink(missing_ok=True)

    def _files(self, key: str) -> Path:
        return self._dir(key) / "files"

    def _write_diff(self, key: str, writer: tarsafe.TarWriter) -> None:
        writer.add_tree(self._files(key))
        if key == "broken":
            raise OSError("disk went away")

    async def _mount_layer(self, meta: _Meta) -> None:
        self.calls.append(f"mount {meta.key}")
        if self.fail_mount:
            raise OSError("no")

    async def _unmount_layer(self, key: str) -> None:
        self.calls.append(f"unmount {key}")


def layer_tar(path: Path, files: dict[str, bytes]) -> str:
    with tarfile.open(path, "w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
    return str(path)


def context(data_dir: Path, **options: str) -> DriverContext:
    return DriverContext(data_dir=data_dir, run_dir=data_dir / "run", owner="test", options=options)


@pytest_asyncio.fixture
async def driver(tmp_path: Path) -> AsyncIterator[ToyDriver]:
    drv = ToyDriver(context(tmp_path / "d"))
    await drv.setup()
    yield drv
    await drv.close()


@pytest.fixture
def tar(tmp_path: Path) -> str:
    return layer_tar(tmp_path / "t.tar", {"a": b"12345", "b": b"xy"})


async def test_apply_records_and_lists(driver: ToyDriver, tar: str) -> None:
    info = await driver.apply("base", None, tar)
    assert info == LayerInfo(key="base", parent=None, size=7, diff_id=tarsafe.sha256_file(tar))
    await driver.prepare("c:1/x", "base")  # keys are opaque
    assert await driver.list() == ["base", "c:1/x"]
    assert await driver.exists("c:1/x") and not await driver.exists("other")
    assert await driver.layer_info("base") == info
    assert await driver.layer_info("c:1/x") == LayerInfo(key="c:1/x", parent="base", size=0)
    meta = driver._read_meta("c:1/x")
    assert (meta.kind, meta.note) == ("rw", "made rw")
    assert (driver._dir("base") / "files" / "a").read_bytes() == b"12345"
    assert await driver.usage("base") == 7
    assert driver._layer_count() == 2


async def test_create_conflicts_and_missing_parents(driver: ToyDriver, tar: str) -> None:
    await driver.apply("base", None, tar)
    with pytest.raises(Conflict, match="already exists"):
        await driver.prepare("base", None)
    with pytest.raises(NotFound):
        await driver.apply("child", "missing", tar)
    with pytest.raises(NotFound):
        await driver.layer_info("child")


async def test_failed_creation_leaves_nothing(driver: ToyDriver, tmp_path: Path) -> None:
    bad = layer_tar(tmp_path / "bad.tar", {"../escape": b"x"})
    with pytest.raises(InvalidArgument):
        await driver.apply("bad", None, bad)
    assert driver.calls == ["extras bad"]
    assert os.listdir(driver._layers) == [] and os.listdir(driver._root / "extras") == []


async def test_remove(driver: ToyDriver, tar: str) -> None:
    await driver.apply("base", None, tar)
    await driver.prepare("rw", "base")
    with pytest.raises(Conflict, match="dependent layers: rw"):
        await driver.remove("base")
    await driver.remove("rw")
    await driver.remove("base")
    assert driver.calls == ["extras rw", "extras base"]
    assert os.listdir(driver._layers) == [] and os.listdir(driver._root / "extras") == []
    with pytest.raises(NotFound):
        await driver.remove("base")


async def test_mounts_are_reference_counted(driver: ToyDriver, tar: str) -> None:
    await driver.apply("base", None, tar)
    path = await driver.mount("base")
    assert path == str(driver._files("base"))
    assert await driver.mount("base") == path
    with pytest.raises(Conflict, match="mounted"):
        await driver.remove("base")
    await driver.unmount("base")
    assert driver.calls == ["mount base"]
    await driver.unmount("base")
    await driver.unmount("base")  # not held: a no-op
    assert driver.calls == ["mount base", "unmount base"]
    with pytest.raises(NotFound):
        await driver.mount("missing")
    with pytest.raises(NotFound):
        await driver.unmount("missing")


async def test_failed_mount_holds_no_reference(driver: ToyDriver, tar: str) -> None:
    await driver.apply("base", None, tar)
    driver.fail_mount = True
    with pytest.raises(OSError):
        await driver.mount("base")
    driver.fail_mount = False
    await driver.mount("base")
    assert driver.calls == ["mount base", "mount base"]
    await driver.unmount("base")


async def test_diff_writes_a_tar_or_nothing(driver: ToyDriver, tar: str, tmp_path: Path) -> None:
    await driver.apply("base", None, tar)
    out = tmp_path / "out.tar"
    assert await driver.diff("base", str(out)) == out.stat().st_size
    with tarfile.open(out) as tf:
        assert sorted(tf.getnames()) == ["a", "b"]
    await driver.apply("broken", None, tar)
    with pytest.raises(OSError, match="disk went away"):
        await driver.diff("broken", str(tmp_path / "broken.tar"))
    assert not (tmp_path / "broken.tar").exists()
    with pytest.raises(NotFound):
        await driver.diff("missing", str(tmp_path / "missing.tar"))


async def test_setup_refuses_options(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="toy: unknown storage options a, b"):
        await ToyDriver(context(tmp_path, b="1", a="2")).setup()


async def test_setup_sweeps_leftovers_once(driver: ToyDriver, tar: str) -> None:
    await driver.apply("base", None, tar)
    layers = driver._layers
    for name in (".tmp-base-1", ".trash-x-2"):
        (layers / name / "files").mkdir(parents=True)
    await driver.setup()  # this instance may have creations in flight: nothing is swept
    assert sorted(os.listdir(layers)) == [".tmp-base-1", ".trash-x-2", layer_id("base")]
    fresh = ToyDriver(driver.context)
    await fresh.setup()
    assert os.listdir(layers) == [layer_id("base")]
    assert await fresh.list() == ["base"]


def test_list_of_a_driver_never_set_up(tmp_path: Path) -> None:
    drv = ToyDriver(context(tmp_path / "nothing"))
    assert drv._all_meta() == [] and drv._layer_count() == 0


def test_tree_size_counts_hard_links_once(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 10)
    os.link(tmp_path / "d" / "f", tmp_path / "hard")
    os.symlink("d/f", tmp_path / "sym")
    (tmp_path / "g").write_bytes(b"y" * 3)
    assert tree_size(tmp_path) == 13
    assert tree_size(tmp_path / "absent") == 0


def test_remove_leftovers(tmp_path: Path) -> None:
    for name in (".tmp-a", ".trash-b", ".other", "keep"):
        (tmp_path / name).mkdir()
    remove_leftovers(tmp_path, (".tmp-",))
    assert sorted(os.listdir(tmp_path)) == [".other", ".trash-b", "keep"]
    remove_leftovers(tmp_path)
    assert sorted(os.listdir(tmp_path)) == [".other", "keep"]
