"""The vfs layer driver: every layer is a full copy of its parent plus its own changes.

Layout under the driver's data dir::

    layers/<id>/meta.json   key, parent, kind (ro|rw), size, diff ID, copy stamp
    layers/<id>/root/       the complete tree of the layer

``<id>`` is the sha256 of the layer key; :mod:`dockyard.layerdirs` holds what this driver shares
with overlay. Nothing is mounted: ``mount`` returns ``root/`` and only counts references.
``apply`` copies the parent (``cp -a``, keeping hard links, xattrs, devices
and ownership) into a staging directory, extracts the tar there with whiteouts applied as
deletions, and renames it into place. ``diff`` compares the tree with the parent's: type, mode,
owner, size, mtime, xattrs, link targets and device numbers; a regular file whose inode changed
after the copy (ctime at or past the copy stamp) is also compared byte for byte, so a rewrite
that kept size and mtime is still seen. Deletions become ``.wh.`` entries; the directories
containing a change are included, as Docker does.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from dockyard import tarsafe
from dockyard.errors import DockyardError
from dockyard.layerdirs import DirectoryLayerDriver, LayerMeta
from dockyard.layerdirs import layer_id as _layer_id  # noqa: F401  (the tests find layer directories with it)
from dockyard.specs import DriverInfo


class CopyError(DockyardError):
    """Copying a parent layer failed."""


@dataclass
class _Meta(LayerMeta):
    stamp_ns: int = 0  # ctime of the copy stamp: inodes changed at/after it are content-compared


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


class VfsDriver(DirectoryLayerDriver[_Meta]):
    """Layers as full directory copies (no overlayfs, no mounts)."""

    info: ClassVar[DriverInfo] = DriverInfo(
        name="vfs", kind="storage",
        description="full copies per layer: slow and large, works on any filesystem and kernel",
        capabilities=frozenset({"xattrs"}),
    )
    meta_class = _Meta
    whiteouts = tarsafe.DeleteWhiteouts()
    replace_inherited = True

    def status(self) -> list[tuple[str, str]]:
        return [("Layers", str(self._layer_count()))]

    def _files(self, key: str) -> Path:
        return self._dir(key) / "root"

    def _populate(self, tmp: Path, meta: _Meta) -> Path:
        root = tmp / "root"
        if meta.parent is not None:
            proc = subprocess.run(["cp", "-a", "--reflink=auto", "--", str(self._files(meta.parent)), str(root)],
                                  capture_output=True, check=False)
            if proc.returncode != 0:
                raise CopyError(f"copying layer {meta.parent!r} failed: "
                                f"{proc.stderr.decode(errors='replace').strip()}")
        else:
            root.mkdir(0o755)
            os.chmod(root, 0o755)
        stamp = tmp / "stamp"
        stamp.touch()
        meta.stamp_ns = os.stat(stamp).st_ctime_ns
        return root

    # ------------------------------------------------------------------ diff
    def _changes(self, key: str) -> tuple[set[str], set[str], Path]:
        meta = self._read_meta(key)
        croot = self._files(key)
        proot = self._files(meta.parent) if meta.parent is not None else None
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

    def _write_diff(self, key: str, writer: tarsafe.TarWriter) -> None:
        adds, whiteouts, croot = self._changes(key)
        for rel in list(adds | whiteouts):  # the directories holding a change, as Docker does
            parts = rel.split("/")
            for i in range(1, len(parts)):
                adds.add("/".join(parts[:i]))
        entries = [(rel.split("/"), rel, False) for rel in adds]
        entries += [(rel.split("/")[:-1] + [tarsafe.WHITEOUT_PREFIX + rel.split("/")[-1]], rel, True)
                    for rel in whiteouts]
        entries.sort(key=lambda e: e[0])
        for _parts, rel, is_whiteout in entries:
            if is_whiteout:
                writer.add_whiteout(rel)
            else:
                writer.add(croot, rel)
