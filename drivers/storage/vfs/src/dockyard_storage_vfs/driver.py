"""The vfs layer driver: every layer is a full copy of its parent plus its own changes.

Layout under the driver's data dir::

    layers/<id>/meta.json   key, parent, kind (ro|rw), size, diff ID, copy stamp
    layers/<id>/root/       the complete tree of the layer

``<id>`` is the sha256 of the layer key. Nothing is mounted: ``mount`` returns ``root/`` and only
counts references. ``apply`` copies the parent (``cp -a``, keeping hard links, xattrs, devices
and ownership) into a staging directory, extracts the tar there with whiteouts applied as
deletions, and renames it into place. ``diff`` compares the tree with the parent's: type, mode,
owner, size, mtime, xattrs, link targets and device numbers; a regular file whose inode changed
after the copy (ctime at or past the copy stamp) is also compared byte for byte, so a rewrite
that kept size and mtime is still seen. Deletions become ``.wh.`` entries; the directories
containing a change are included, as Docker does.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar

from dockyard import tarsafe
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.specs import DriverContext, DriverInfo, LayerDriver
from dockyard.specs.storage import LayerInfo


class CopyError(DockyardError):
    """Copying a parent layer failed."""


@dataclass
class _Meta:
    key: str
    parent: str | None
    kind: str  # "ro" (applied) | "rw" (prepared)
    size: int = 0
    diff_id: str = ""
    stamp_ns: int = 0  # ctime of the copy stamp: inodes changed at/after it are content-compared


def _layer_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _xattrs(path: str) -> dict[str, bytes]:
    out = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return out
        raise
    for name in names:
        with contextlib.suppress(OSError):
            out[name] = os.getxattr(path, name, follow_symlinks=False)
    return out


def _changed(cpath: str, ppath: str, cst: os.stat_result, pst: os.stat_result, stamp_ns: int) -> bool:
    if stat.S_IFMT(cst.st_mode) != stat.S_IFMT(pst.st_mode):
        return True
    if (cst.st_mode, cst.st_uid, cst.st_gid) != (pst.st_mode, pst.st_uid, pst.st_gid):
        return True
    mode = cst.st_mode
    if stat.S_ISLNK(mode):
        return os.readlink(cpath) != os.readlink(ppath)
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        if cst.st_rdev != pst.st_rdev:
            return True
    if stat.S_ISREG(mode) and (cst.st_size != pst.st_size or cst.st_mtime_ns != pst.st_mtime_ns):
        return True
    if _xattrs(cpath) != _xattrs(ppath):
        return True
    if stat.S_ISREG(mode) and cst.st_ctime_ns >= stamp_ns:
        return not _same_bytes(cpath, ppath)
    return False


def _same_bytes(a: str, b: str) -> bool:
    """Byte comparison (not filecmp: its module-level cache grows for the daemon's lifetime)."""
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            ca, cb = fa.read(1 << 20), fb.read(1 << 20)
            if ca != cb:
                return False
            if not ca:
                return True


def tree_size(root: Path) -> int:
    """Bytes of regular files under ``root`` (hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except FileNotFoundError:
                continue
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


class VfsDriver(LayerDriver):
    """Layers as full directory copies (no overlayfs, no mounts)."""

    info: ClassVar[DriverInfo] = DriverInfo(
        name="vfs", kind="storage",
        description="full copies per layer: slow and large, works on any filesystem and kernel",
        capabilities=frozenset({"xattrs"}),
    )

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self._root = Path(context.data_dir)
        self._lock = asyncio.Lock()
        self._refs: dict[str, int] = {}
        self._swept = False  # sweep leftovers at the first setup() only (see _sweep)

    @property
    def _layers(self) -> Path:
        return self._root / "layers"

    def _dir(self, key: str) -> Path:
        return self._layers / _layer_id(key)

    def _read_meta(self, key: str) -> _Meta:
        try:
            data = json.loads((self._dir(key) / "meta.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"layer {key!r} not found") from None
        return _Meta(**data)

    def _all_meta(self) -> list[_Meta]:
        out: list[_Meta] = []
        if not self._layers.is_dir():
            return out
        for entry in os.scandir(self._layers):
            if entry.name.startswith("."):
                continue
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                out.append(_Meta(**json.loads(Path(entry.path, "meta.json").read_text())))
        return out

    # ------------------------------------------------------------------ life cycle
    async def setup(self) -> None:
        unknown = sorted(set(self.context.options))
        if unknown:
            raise InvalidArgument(f"vfs: unknown storage options {', '.join(unknown)}")
        self._layers.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._sweep)

    def _sweep(self) -> None:
        """Remove staging and trash directories an interrupted run left behind.

        Only once per instance: a later ``setup()`` may run while applies are in flight.
        """
        if self._swept:
            return
        self._swept = True
        for entry in os.scandir(self._layers):
            if entry.name.startswith((".tmp-", ".trash-")):
                shutil.rmtree(entry.path, ignore_errors=True)

    def status(self) -> list[tuple[str, str]]:
        layers = 0
        with contextlib.suppress(FileNotFoundError):
            layers = sum(1 for e in os.scandir(self._layers) if not e.name.startswith("."))
        return [("Layers", str(layers))]

    # ------------------------------------------------------------------ creating
    def _create(self, key: str, parent: str | None, kind: str, tar_path: str | None) -> LayerInfo:
        target = self._dir(key)
        if target.exists():
            raise Conflict(f"layer {key!r} already exists")
        if parent is not None:
            self._read_meta(parent)
        meta = _Meta(key=key, parent=parent, kind=kind)
        with tarsafe.staging_dir(target) as tmp:
            root = tmp / "root"
            if parent is not None:
                proc = subprocess.run(["cp", "-a", "--reflink=auto", "--", str(self._dir(parent) / "root"),
                                       str(root)], capture_output=True, check=False)
                if proc.returncode != 0:
                    raise CopyError(f"copying layer {parent!r} failed: "
                                    f"{proc.stderr.decode(errors='replace').strip()}")
            else:
                root.mkdir(0o755)
                os.chmod(root, 0o755)
            stamp = tmp / "stamp"
            stamp.touch()
            meta.stamp_ns = os.stat(stamp).st_ctime_ns
            if tar_path is not None:
                res = tarsafe.extract(tar_path, root, whiteouts=tarsafe.DeleteWhiteouts(),
                                      replace_inherited=True)
                meta.size, meta.diff_id = res.size, res.digest
            (tmp / "meta.json").write_text(json.dumps(asdict(meta)))
        return LayerInfo(key=key, parent=parent, size=meta.size, diff_id=meta.diff_id)

    async def apply(self, key: str, parent: str | None, tar_path: str) -> LayerInfo:
        return await asyncio.to_thread(self._create, key, parent, "ro", tar_path)

    async def prepare(self, key: str, parent: str | None) -> None:
        await asyncio.to_thread(self._create, key, parent, "rw", None)

    # ------------------------------------------------------------------ mounting
    async def mount(self, key: str) -> str:
        async with self._lock:
            self._read_meta(key)
            self._refs[key] = self._refs.get(key, 0) + 1
            return str(self._dir(key) / "root")

    async def unmount(self, key: str) -> None:
        async with self._lock:
            if not self._dir(key).is_dir():
                raise NotFound(f"layer {key!r} not found")
            n = self._refs.get(key, 0)
            if n <= 1:
                self._refs.pop(key, None)  # releasing an unmounted layer is idempotent
            else:
                self._refs[key] = n - 1

    # ------------------------------------------------------------------ diff
    def _changes(self, key: str) -> tuple[set[str], set[str], Path]:
        meta = self._read_meta(key)
        croot = self._dir(key) / "root"
        proot = self._dir(meta.parent) / "root" if meta.parent is not None else None
        adds: set[str] = set()
        whiteouts: set[str] = set()

        def add_tree(rel: str) -> None:
            adds.add(rel)
            path = croot / rel
            if path.is_dir() and not path.is_symlink():
                for dirpath, dirnames, filenames in os.walk(path):
                    for name in dirnames + filenames:
                        adds.add(os.path.relpath(os.path.join(dirpath, name), croot))

        def walk(rel: str) -> None:
            cdir = croot / rel if rel else croot
            pdir = (proot / rel if rel else proot) if proot is not None else None
            centries = {e.name: e for e in os.scandir(cdir)}
            pentries = {e.name: e for e in os.scandir(pdir)} if pdir is not None else {}
            for name in pentries.keys() - centries.keys():
                whiteouts.add(f"{rel}/{name}" if rel else name)
            for name, ce in centries.items():
                child = f"{rel}/{name}" if rel else name
                pe = pentries.get(name)
                if pe is None:
                    add_tree(child)
                    continue
                cst, pst = ce.stat(follow_symlinks=False), pe.stat(follow_symlinks=False)
                if stat.S_ISDIR(cst.st_mode) and not stat.S_ISDIR(pst.st_mode):
                    add_tree(child)
                    continue
                if _changed(ce.path, pe.path, cst, pst, meta.stamp_ns):
                    adds.add(child)
                if stat.S_ISDIR(cst.st_mode):
                    walk(child)

        walk("")
        return adds, whiteouts, croot

    def _write_diff(self, key: str, out_path: str) -> int:
        adds, whiteouts, croot = self._changes(key)
        for rel in list(adds | whiteouts):  # the directories holding a change, as Docker does
            parts = rel.split("/")
            for i in range(1, len(parts)):
                adds.add("/".join(parts[:i]))
        entries = [(rel.split("/"), rel, False) for rel in adds]
        entries += [(rel.split("/")[:-1] + [tarsafe.WHITEOUT_PREFIX + rel.split("/")[-1]], rel, True)
                    for rel in whiteouts]
        entries.sort(key=lambda e: e[0])
        try:
            with tarsafe.TarWriter(out_path) as w:
                for _parts, rel, is_whiteout in entries:
                    if is_whiteout:
                        w.add_whiteout(rel)
                    else:
                        w.add(croot, rel)
            return os.path.getsize(out_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(out_path)
            raise

    async def diff(self, key: str, out_path: str) -> int:
        self._read_meta(key)
        return await asyncio.to_thread(self._write_diff, key, out_path)

    # ------------------------------------------------------------------ removing, listing
    def _remove(self, key: str) -> None:
        self._read_meta(key)
        children = sorted(m.key for m in self._all_meta() if m.parent == key)
        if children:
            raise Conflict(f"layer {key!r} has dependent layers: {', '.join(children[:5])}")
        target = self._dir(key)
        trash = self._layers / f".trash-{target.name}-{secrets.token_hex(4)}"
        os.rename(target, trash)
        shutil.rmtree(trash)

    async def remove(self, key: str) -> None:
        async with self._lock:
            if self._refs.get(key, 0) > 0:
                raise Conflict(f"layer {key!r} is mounted")
            await asyncio.to_thread(self._remove, key)

    async def exists(self, key: str) -> bool:
        return (self._dir(key) / "meta.json").is_file()

    async def list(self) -> list[str]:
        return sorted(m.key for m in await asyncio.to_thread(self._all_meta))

    async def usage(self, key: str) -> int:
        self._read_meta(key)
        return await asyncio.to_thread(tree_size, self._dir(key) / "root")

    async def layer_info(self, key: str) -> LayerInfo:
        """The stored :class:`LayerInfo` of ``key``."""
        meta = self._read_meta(key)
        return LayerInfo(key=meta.key, parent=meta.parent, size=meta.size, diff_id=meta.diff_id)
