"""Conformance kit for layer drivers (``dockyard.drivers.storage``).

Usage, in the driver's own tests (the one-line form builds the driver from a private
:func:`make_context` and runs ``setup()``/``close()`` around each case)::

    class TestMyDriver(StorageContract):
        driver_class = MyDriver

or supply the ``driver`` fixture yourself (an instance whose ``setup()`` has run).

The cases follow :class:`dockyard.specs.storage.LayerDriver`: ``apply`` extracts a layer tar
safely and atomically, mounts show a layer with its parents (whiteouts and opaque directories
applied), ``prepare`` makes a writable layer whose ``diff`` is a Docker layer tar (``.wh.``
entries for deletions) that re-applies to the same view, removing a layer others build on is a
:class:`~dockyard.errors.Conflict`, mounts are reference counted. After every case no mount may
remain under the driver's data dir.

Capabilities (``DriverInfo.capabilities``) that enable extra cases:

``xattrs``
    extended attributes in layer tars are preserved (``user.*`` read back through the mount).
``opaque-dirs``
    ``diff`` records a directory deleted and recreated as an opaque directory
    (``.wh..wh..opq``) rather than one whiteout per former child.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import shutil
import stat
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.specs import LayerDriver
from dockyard_plugin_sdk.conformance import requires
from dockyard_plugin_sdk.conformance._common import (
    DriverContract,
    NoMountLeftBehind,
    mounts_under,
)

__all__ = ["StorageContract", "layer_entry", "make_layer_tar", "read_tree"]

MTIME = 1_600_000_000


# --------------------------------------------------------------------------- helpers
def layer_entry(name: str, kind: str = "file", data: bytes = b"", mode: int | None = None,
                link: str = "", uid: int = 0, gid: int = 0, mtime: int = MTIME,
                xattrs: dict[str, str] | None = None, dev: tuple[int, int] = (0, 0)
                ) -> tuple[tarfile.TarInfo, bytes]:
    """One tar member: ``kind`` is file, dir, sym, link (hard link), chr, blk or fifo."""
    ti = tarfile.TarInfo(name)
    ti.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
               "link": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
               "fifo": tarfile.FIFOTYPE}[kind]
    ti.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    ti.uid, ti.gid, ti.mtime = uid, gid, mtime
    ti.linkname = link
    ti.devmajor, ti.devminor = dev
    if kind == "file":
        ti.size = len(data)
    for k, v in (xattrs or {}).items():
        ti.pax_headers["SCHILY.xattr." + k] = v
    return ti, data


def make_layer_tar(path: Path, *entries: tuple[tarfile.TarInfo, bytes]) -> str:
    """Write ``entries`` as a PAX tar at ``path``; returns the path as a string."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return str(path)


def read_tree(root: str | Path) -> dict[str, tuple[Any, ...]]:
    """``rel path -> (type, mode, uid, gid, content or link target)`` of a tree, without mtimes."""
    out: dict[str, tuple[Any, ...]] = {}
    root = Path(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath, name)
            st = os.lstat(p)
            kind = stat.S_IFMT(st.st_mode)
            body: Any = None
            if stat.S_ISREG(st.st_mode):
                body = p.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(p)
            elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
                body = st.st_rdev
            out[str(p.relative_to(root))] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, body)
    return out


def tar_names(path: str | Path) -> list[str]:
    with tarfile.open(path) as tf:
        return [m.name for m in tf.getmembers()]


def _all_paths(root: Path) -> set[str]:
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


@contextlib.asynccontextmanager
async def mounted(driver: LayerDriver, key: str) -> AsyncIterator[Path]:
    """Mount ``key`` for the duration of the block."""
    path = await driver.mount(key)
    try:
        yield Path(path)
    finally:
        await driver.unmount(key)


# --------------------------------------------------------------------------- the kit
class StorageContract(NoMountLeftBehind, DriverContract):
    """Cases every layer driver passes."""

    kind: ClassVar[str] = "storage"

    @pytest.fixture
    def work(self, tmp_path: Path) -> Path:
        """A scratch directory for tars, outside the driver's data dir."""
        d = tmp_path / "work"
        d.mkdir(exist_ok=True)
        return d

    # ------------------------------------------------------------------ apply + read back
    def _base_tar(self, work: Path) -> str:
        return make_layer_tar(
            work / "base.tar",
            layer_entry("etc", "dir", mode=0o755),
            layer_entry("etc/config", data=b"v1\n", mode=0o640, uid=1000, gid=1001),
            layer_entry("etc/keep", data=b"unchanged\n"),
            layer_entry("bin", "dir", mode=0o755),
            layer_entry("bin/tool", data=b"#!/bin/sh\necho hi\n", mode=0o4755),
            layer_entry("bin/alias", "link", link="bin/tool"),
            layer_entry("bin/sh", "sym", link="/bin/tool"),
            layer_entry("bin/rel", "sym", link="tool"),
            layer_entry("private", "dir", mode=0o700, uid=1000, gid=1000),
            layer_entry("private/f", data=b"secret", mode=0o600, uid=1000, gid=1000),
            layer_entry("data", "dir"),
            layer_entry("data/dir", "dir"),
            layer_entry("data/dir/a", data=b"a"),
            layer_entry("data/dir/b", data=b"b"),
            layer_entry("gone.txt", data=b"to delete"),
            layer_entry("gonedir", "dir"),
            layer_entry("gonedir/x", data=b"x"),
            layer_entry("pipe", "fifo", mode=0o600),
        )

    async def test_apply_and_read_back_through_mount(self, driver: LayerDriver, work: Path) -> None:
        tar = self._base_tar(work)
        info = await driver.apply("base", None, tar)
        assert info.key == "base" and info.parent is None
        assert info.diff_id in ("", "sha256:" + hashlib.sha256(Path(tar).read_bytes()).hexdigest())
        async with mounted(driver, "base") as root:
            assert (root / "etc" / "config").read_bytes() == b"v1\n"
            st = os.lstat(root / "etc" / "config")
            assert stat.S_IMODE(st.st_mode) == 0o640 and (st.st_uid, st.st_gid) == (1000, 1001)
            assert st.st_mtime == MTIME
            assert stat.S_IMODE(os.lstat(root / "bin" / "tool").st_mode) == 0o4755
            assert os.readlink(root / "bin" / "sh") == "/bin/tool"
            assert os.readlink(root / "bin" / "rel") == "tool"
            tool, alias = os.stat(root / "bin" / "tool"), os.stat(root / "bin" / "alias")
            assert (tool.st_ino, tool.st_dev) == (alias.st_ino, alias.st_dev) and tool.st_nlink == 2
            priv = os.lstat(root / "private")
            assert stat.S_IMODE(priv.st_mode) == 0o700 and priv.st_uid == 1000
            assert os.lstat(root / "private").st_mtime == MTIME
            assert stat.S_ISFIFO(os.lstat(root / "pipe").st_mode)
            assert sorted(os.listdir(root / "data" / "dir")) == ["a", "b"]

    async def test_layer_info_and_usage(self, driver: LayerDriver, work: Path) -> None:
        tar = make_layer_tar(work / "t.tar", layer_entry("big", data=b"x" * 100_000))
        info = await driver.apply("k1", None, tar)
        assert info.size >= 100_000
        assert info.diff_id == "sha256:" + hashlib.sha256(Path(tar).read_bytes()).hexdigest()
        usage = await driver.usage("k1")
        assert usage == 0 or 100_000 <= usage < 10_000_000  # 0: the driver does not measure

    @pytest.mark.parametrize("key", ["sha256:" + "ab" * 32, "a/b:c", "x" * 200])
    async def test_keys_are_opaque(self, driver: LayerDriver, work: Path, key: str) -> None:
        tar = make_layer_tar(work / "t.tar", layer_entry("f", data=b"f"))
        await driver.apply(key, None, tar)
        await driver.prepare(key + "-rw", key)
        assert await driver.exists(key) and await driver.exists(key + "-rw")
        async with mounted(driver, key + "-rw") as root:
            assert (root / "f").read_bytes() == b"f"
        assert sorted(await driver.list()) == sorted([key, key + "-rw"])

    # ------------------------------------------------------------------ stacking
    async def test_stacked_whiteouts_and_opaque_dirs(self, driver: LayerDriver, work: Path) -> None:
        l1 = make_layer_tar(
            work / "l1.tar",
            layer_entry("a", "dir"), layer_entry("a/x", data=b"x"), layer_entry("a/y", data=b"y"),
            layer_entry("b", "dir"), layer_entry("b/z", data=b"z"),
            layer_entry("o", "dir"), layer_entry("o/old", data=b"old"),
            layer_entry("o/sub", "dir"), layer_entry("o/sub/old2", data=b"old2"),
            layer_entry("keep", data=b"keep"),
        )
        l2 = make_layer_tar(
            work / "l2.tar",
            layer_entry("a", "dir"), layer_entry("a/.wh.x"),
            layer_entry(".wh.b"),
            layer_entry("o", "dir"), layer_entry("o/.wh..wh..opq"), layer_entry("o/new", data=b"new"),
        )
        l3 = make_layer_tar(work / "l3.tar", layer_entry("b", "dir"), layer_entry("b/fresh", data=b"f"))
        await driver.apply("l1", None, l1)
        await driver.apply("l2", "l1", l2)
        await driver.apply("l3", "l2", l3)
        async with mounted(driver, "l2") as root:
            assert sorted(os.listdir(root)) == ["a", "keep", "o"]
            assert sorted(os.listdir(root / "a")) == ["y"]
            assert sorted(os.listdir(root / "o")) == ["new"]
            assert (root / "keep").read_bytes() == b"keep"
        async with mounted(driver, "l3") as root:
            assert sorted(os.listdir(root)) == ["a", "b", "keep", "o"]
            assert sorted(os.listdir(root / "b")) == ["fresh"]
        async with mounted(driver, "l1") as root:  # the lower layer itself is untouched
            assert sorted(os.listdir(root / "a")) == ["x", "y"]
            assert sorted(os.listdir(root / "o")) == ["old", "sub"]
        await driver.prepare("rw", "l3")
        async with mounted(driver, "rw") as root:
            assert sorted(os.listdir(root / "o")) == ["new"]
            assert not (root / "a" / "x").exists()

    async def test_layer_paths_win_over_inherited_symlinks_and_files(self, driver: LayerDriver,
                                                                     work: Path) -> None:
        """A layer adding ``lib/x`` over a parent's ``lib`` symlink (or ``f/y`` over a file
        ``f``) gets a directory there, as an overlay upper directory hides the lower entry;
        nothing is written through the symlink."""
        await driver.apply("base", None, make_layer_tar(
            work / "base.tar", layer_entry("usr", "dir"), layer_entry("usr/lib", "dir"),
            layer_entry("usr/lib/a", data=b"a"), layer_entry("lib", "sym", link="usr/lib"),
            layer_entry("f", data=b"file")))
        await driver.apply("top", "base", make_layer_tar(
            work / "top.tar", layer_entry("lib/x", data=b"x"), layer_entry("f/y", data=b"y")))
        async with mounted(driver, "top") as root:
            assert not (root / "lib").is_symlink() and sorted(os.listdir(root / "lib")) == ["x"]
            assert sorted(os.listdir(root / "usr" / "lib")) == ["a"]
            assert (root / "f" / "y").read_bytes() == b"y"
        async with mounted(driver, "base") as root:
            assert (root / "lib").is_symlink() and (root / "f").read_bytes() == b"file"

    # ------------------------------------------------------------------ diff
    async def _changed_container(self, driver: LayerDriver, work: Path) -> dict[str, tuple[Any, ...]]:
        await driver.apply("base", None, self._base_tar(work))
        await driver.prepare("ctr", "base")
        async with mounted(driver, "ctr") as root:
            (root / "etc" / "config").write_bytes(b"v2 changed\n")
            (root / "new.txt").write_bytes(b"new file")
            (root / "newdir" / "deep").mkdir(parents=True)
            (root / "newdir" / "deep" / "f").write_bytes(b"deep")
            os.unlink(root / "gone.txt")
            shutil.rmtree(root / "gonedir")
            os.chmod(root / "bin" / "tool", 0o700)
            os.symlink("etc/config", root / "cfglink")
            # A lower directory renamed: overlayfs must copy it up (redirect_dir off), or the
            # upper dir would not hold its contents.
            shutil.move(str(root / "data" / "dir"), str(root / "data" / "moved"))
            view = read_tree(root)
        return view

    async def test_diff_of_a_container(self, driver: LayerDriver, work: Path) -> None:
        await self._changed_container(driver, work)
        out = work / "diff.tar"
        size = await driver.diff("ctr", str(out))
        assert size == out.stat().st_size > 0
        names = tar_names(out)
        expected = {"etc/config", "new.txt", "newdir", "newdir/deep", "newdir/deep/f", ".wh.gone.txt",
                    ".wh.gonedir", "bin/tool", "cfglink", "data/.wh.dir", "data/moved", "data/moved/a",
                    "data/moved/b"}
        assert expected <= set(names), f"missing from diff: {expected - set(names)}"
        ancestors = {"/".join(n.split("/")[:i]) for n in expected for i in range(1, n.count("/") + 1)}
        # bin/alias is a hard link of bin/tool: whether the chmod reaches it depends on the
        # driver (overlayfs copy-up breaks the link), so it may appear or not.
        extra = set(names) - expected - ancestors - {"bin/alias"}
        assert not extra, f"unchanged entries in the diff: {sorted(extra)}"
        assert len(names) == len(set(names)), "duplicate entries in the diff"
        with tarfile.open(out) as tf:
            moved = tf.extractfile("data/moved/a")
            assert moved is not None and moved.read() == b"a"
            cfg = tf.extractfile("etc/config")
            assert cfg is not None and cfg.read() == b"v2 changed\n"
            assert tf.getmember("etc/config").uid == 1000
            assert stat.S_IMODE(tf.getmember("bin/tool").mode) == 0o700

    async def test_diff_reapplies_to_the_same_view(self, driver: LayerDriver, work: Path) -> None:
        view = await self._changed_container(driver, work)
        out = work / "diff.tar"
        await driver.diff("ctr", str(out))
        await driver.apply("committed", "base", str(out))
        async with mounted(driver, "committed") as root:
            assert read_tree(root) == view

    async def test_recreated_directory(self, driver: LayerDriver, work: Path) -> None:
        await driver.apply("base", None, self._base_tar(work))
        await driver.prepare("ctr", "base")
        async with mounted(driver, "ctr") as root:
            shutil.rmtree(root / "data" / "dir")
            (root / "data" / "dir").mkdir()
            (root / "data" / "dir" / "c").write_bytes(b"c")
            view = read_tree(root)
        out = work / "diff.tar"
        await driver.diff("ctr", str(out))
        await driver.apply("committed", "base", str(out))
        async with mounted(driver, "committed") as root:
            assert sorted(os.listdir(root / "data" / "dir")) == ["c"]
            assert read_tree(root) == view

    async def test_recreated_directory_is_opaque(self, driver: LayerDriver, work: Path) -> None:
        requires(driver, "opaque-dirs")
        await driver.apply("base", None, self._base_tar(work))
        await driver.prepare("ctr", "base")
        async with mounted(driver, "ctr") as root:
            shutil.rmtree(root / "data" / "dir")
            (root / "data" / "dir").mkdir()
        out = work / "diff.tar"
        await driver.diff("ctr", str(out))
        assert "data/dir/.wh..wh..opq" in tar_names(out)

    async def test_diff_of_a_base_layer(self, driver: LayerDriver, work: Path) -> None:
        await driver.prepare("scratch", None)
        async with mounted(driver, "scratch") as root:
            (root / "hello").write_bytes(b"world")
            (root / "d").mkdir()
        out = work / "diff.tar"
        await driver.diff("scratch", str(out))
        assert sorted(tar_names(out)) == ["d", "hello"]

    async def test_diff_of_an_applied_layer(self, driver: LayerDriver, work: Path) -> None:
        tar = self._base_tar(work)
        await driver.apply("base", None, tar)
        await driver.apply("top", "base", make_layer_tar(
            work / "top.tar", layer_entry("etc", "dir"), layer_entry("etc/.wh.keep"),
            layer_entry("etc/added", data=b"+")))
        out = work / "diff.tar"
        await driver.diff("top", str(out))
        names = set(tar_names(out))
        assert {"etc/.wh.keep", "etc/added"} <= names <= {"etc", "etc/.wh.keep", "etc/added"}

    # ------------------------------------------------------------------ hostile input
    def _hostile(self, work: Path, outside: Path) -> dict[str, list[tuple[tarfile.TarInfo, bytes]]]:
        ok = [layer_entry("fine", data=b"fine")]
        return {
            "dotdot": ok + [layer_entry("../escaped", data=b"x")],
            "absolute": ok + [layer_entry(str(outside / "escaped"), data=b"x")],
            "symlink-then-file": ok + [layer_entry("lnk", "sym", link=str(outside)),
                                       layer_entry("lnk/escaped", data=b"x")],
            "hardlink-outside": ok + [layer_entry("h", "link", link="../outside/sentinel")],
            "device-node": ok + [layer_entry("dev", "blk", dev=(8, 0))],
            "whiteout-escape": ok + [layer_entry(".wh..."), layer_entry("a/.wh..")],
            "whiteout-through-symlink": ok + [layer_entry("lnk", "sym", link=str(outside)),
                                              layer_entry("lnk/.wh.sentinel")],
        }

    @pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink-then-file", "hardlink-outside",
                                      "device-node", "whiteout-escape", "whiteout-through-symlink",
                                      "truncated"])
    async def test_hostile_tar_leaves_no_layer(self, driver: LayerDriver, work: Path, case: str) -> None:
        outside = work.parent / "outside"
        outside.mkdir()
        (outside / "sentinel").write_bytes(b"untouched")
        await driver.apply("base", None, make_layer_tar(work / "base.tar", layer_entry("b", data=b"b")))
        before = await driver.list()
        if case == "truncated":
            good = make_layer_tar(work / "good.tar", layer_entry("big", data=b"z" * 50_000))
            tar = work / "evil.tar"
            tar.write_bytes(Path(good).read_bytes()[:20_000])
        else:
            tar = Path(make_layer_tar(work / "evil.tar", *self._hostile(work, outside)[case]))
        everything = _all_paths(work.parent)
        with pytest.raises(InvalidArgument):
            await driver.apply("evil", "base", str(tar))
        assert not await driver.exists("evil")
        assert await driver.list() == before
        assert _all_paths(work.parent) == everything, "the failed apply left files behind"
        assert sorted(os.listdir(outside)) == ["sentinel"]
        assert (outside / "sentinel").read_bytes() == b"untouched"
        assert not (work.parent / "escaped").exists()
        await driver.apply("evil", "base", make_layer_tar(work / "fine.tar", layer_entry("ok", data=b"")))
        assert await driver.exists("evil")  # the key was not left half-taken

    # ------------------------------------------------------------------ life cycle
    async def test_remove_layer_with_children_is_a_conflict(self, driver: LayerDriver, work: Path) -> None:
        tar = make_layer_tar(work / "t.tar", layer_entry("f", data=b"f"))
        await driver.apply("p", None, tar)
        await driver.apply("c", "p", tar)
        await driver.prepare("rw", "c")
        for key in ("p", "c"):
            with pytest.raises(Conflict):
                await driver.remove(key)
            assert await driver.exists(key)
        await driver.remove("rw")
        await driver.remove("c")
        await driver.remove("p")
        assert await driver.list() == []

    async def test_mount_is_reference_counted(self, driver: LayerDriver, work: Path) -> None:
        await driver.apply("base", None, make_layer_tar(work / "t.tar", layer_entry("f", data=b"f")))
        await driver.prepare("rw", "base")
        first = await driver.mount("rw")
        second = await driver.mount("rw")
        assert first == second
        (Path(first) / "written").write_bytes(b"w")
        await driver.unmount("rw")
        assert (Path(first) / "f").read_bytes() == b"f"
        assert (Path(first) / "written").read_bytes() == b"w"
        await driver.unmount("rw")
        assert mounts_under(Path(driver.context.data_dir)) == []
        async with mounted(driver, "rw") as root:  # the write survived the unmount
            assert (root / "written").read_bytes() == b"w"

    async def test_a_volatile_mount_reads_and_writes_and_mounts_again(self, driver: LayerDriver, work: Path) -> None:
        """``mount(key, volatile=True)`` (a ``--rm`` container's rootfs) behaves as a mount;
        the same layer can be mounted again afterwards (overlayfs refuses an upper a volatile
        mount used unless the driver clears its mark) and shows what was written."""
        requires(driver, "volatile")
        await driver.apply("base", None, make_layer_tar(work / "t.tar", layer_entry("f", data=b"f")))
        await driver.prepare("rw", "base")
        root = Path(await driver.mount("rw", volatile=True))
        assert (root / "f").read_bytes() == b"f"
        (root / "written").write_bytes(b"w")
        await driver.unmount("rw")
        assert mounts_under(Path(driver.context.data_dir)) == []
        async with mounted(driver, "rw") as again:
            assert (again / "written").read_bytes() == b"w"
        await driver.remove("rw")
        await driver.remove("base")

    async def test_concurrent_use(self, driver: LayerDriver, work: Path) -> None:
        tar = make_layer_tar(work / "t.tar", layer_entry("f", data=b"f" * 10_000))
        results = await asyncio.gather(driver.apply("same", None, tar), driver.apply("same", None, tar),
                                       return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1 and isinstance(errors[0], Conflict), results
        assert await driver.list() == ["same"]
        await asyncio.gather(*(driver.prepare(f"rw{i}", "same") for i in range(4)))
        paths = await asyncio.gather(*(driver.mount(f"rw{i % 4}") for i in range(8)))
        try:
            assert len(set(paths)) == 4
            for p in paths:
                assert (Path(p) / "f").read_bytes() == b"f" * 10_000
        finally:
            await asyncio.gather(*(driver.unmount(f"rw{i % 4}") for i in range(8)))
        assert mounts_under(Path(driver.context.data_dir)) == []

    async def test_list_and_exists(self, driver: LayerDriver, work: Path) -> None:
        assert await driver.list() == []
        assert not await driver.exists("nope")
        tar = make_layer_tar(work / "t.tar", layer_entry("f", data=b"f"))
        await driver.apply("one", None, tar)
        await driver.prepare("two", "one")
        assert sorted(await driver.list()) == ["one", "two"]
        assert await driver.exists("one") and await driver.exists("two")
        await driver.remove("two")
        assert await driver.list() == ["one"] and not await driver.exists("two")

    async def test_errors(self, driver: LayerDriver, work: Path) -> None:
        tar = make_layer_tar(work / "t.tar", layer_entry("f", data=b"f"))
        await driver.apply("one", None, tar)
        with pytest.raises(Conflict):
            await driver.apply("one", None, tar)
        with pytest.raises(Conflict):
            await driver.prepare("one", None)
        with pytest.raises(NotFound):
            await driver.apply("two", "missing-parent", tar)
        with pytest.raises(NotFound):
            await driver.prepare("two", "missing-parent")
        assert sorted(await driver.list()) == ["one"]
        for op in (driver.mount, driver.remove):
            with pytest.raises(NotFound):
                await op("missing")
        with pytest.raises(NotFound):
            await driver.diff("missing", str(work / "d.tar"))

    async def test_layers_survive_a_new_instance(self, driver: LayerDriver, work: Path) -> None:
        await driver.apply("base", None, make_layer_tar(work / "t.tar", layer_entry("f", data=b"f")))
        await driver.prepare("rw", "base")
        again = type(driver)(driver.context)
        await again.setup()
        try:
            assert sorted(await again.list()) == ["base", "rw"]
            async with mounted(again, "rw") as root:
                assert (root / "f").read_bytes() == b"f"
        finally:
            await again.close()

    async def test_xattrs_preserved(self, driver: LayerDriver, work: Path) -> None:
        requires(driver, "xattrs")
        tar = make_layer_tar(work / "t.tar", layer_entry("f", data=b"f", xattrs={"user.origin": "kit"}),
                             layer_entry("d", "dir", xattrs={"user.dir": "yes"}))
        await driver.apply("base", None, tar)
        await driver.prepare("rw", "base")
        async with mounted(driver, "rw") as root:
            assert os.getxattr(root / "f", "user.origin") == b"kit"
            assert os.getxattr(root / "d", "user.dir") == b"yes"
            os.setxattr(root / "f", "user.origin", b"changed")
        out = work / "diff.tar"
        await driver.diff("rw", str(out))
        with tarfile.open(out) as tf:
            assert tf.getmember("f").pax_headers.get("SCHILY.xattr.user.origin") == "changed"
