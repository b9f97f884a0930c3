"""The overlay layer driver: one directory per layer, stacked with overlayfs.

Layout under the driver's data dir (see :mod:`dockyard.layerdirs` for what all such drivers share)::

    layers/<id>/meta.json   key, parent, kind (ro|rw), link, lower chain, size, diff ID
    layers/<id>/diff/       what this layer adds (overlay whiteouts: 0/0 char devices,
                            trusted.overlay.opaque=y on opaque directories)
    layers/<id>/work/       overlayfs work dir (read-write layers)
    layers/<id>/merged/     the mount point
    l/<short>               symlink to ../layers/<id>/diff, keeps lowerdir= short
    empty/                  an empty lower for layers without a parent

``<id>`` is the sha256 of the layer key (keys are opaque and may hold ``:``). A layer is mounted
with mount(2) and absolute paths when its options fit in the kernel's one page; deeper ones by
``/bin/mount`` run with the data dir as working directory, so ``lowerdir=l/AB..:l/CD..`` stays
far below that limit (about 120 layers). Every mount's source is
``dockyard-<owner>``, so reconciliation (and leak checks) recognise this daemon's mounts;
``setup()`` unmounts the ones a previous run left under this data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import secrets
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from dockyard import tarsafe
from dockyard.errors import InvalidArgument, Unavailable
from dockyard.layerdirs import DirectoryLayerDriver, LayerMeta, remove_leftovers
from dockyard.layerdirs import layer_id as _layer_id
from dockyard.mounts import MountError, mount, read_mounts, umount
from dockyard.specs import DriverContext, DriverInfo

MAX_DEPTH = 120
#: what mount(2) takes as filesystem options: one page, with its terminating NUL
MAX_DATA = 4095
MS_RDONLY = 1
#: Mount options tried in order at setup: without redirect_dir/metacopy off, renaming a lower
#: directory or changing metadata would not copy the file up and the upper dir would not be a
#: complete diff.
_FEATURE_OPTS = ("index=off,redirect_dir=off,metacopy=off", "index=off,redirect_dir=off", "")


@functools.cache
def _libc() -> ctypes.CDLL:
    """The C library this process runs with (its ``mount``), looked up once."""
    return ctypes.CDLL(None, use_errno=True)


@dataclass
class _Meta(LayerMeta):
    link: str = ""
    lower: list[str] = field(default_factory=list)  # links of ancestors, nearest first


class OverlayDriver(DirectoryLayerDriver[_Meta]):
    """Layers as overlayfs lower/upper directories."""

    info: ClassVar[DriverInfo] = DriverInfo(
        name="overlay", kind="storage",
        description="overlayfs: one directory per layer, mounted as a stack (needs overlay in the kernel)",
        capabilities=frozenset({"xattrs", "opaque-dirs", "volatile"}),
    )
    meta_class = _Meta
    whiteouts = tarsafe.OverlayWhiteouts()

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self._mount_opts: str | None = None
        #: whether this kernel takes overlayfs's ``volatile`` (probed at setup)
        self._volatile = False
        self._source = f"dockyard-{context.owner}"

    # ------------------------------------------------------------------ life cycle
    async def setup(self) -> None:
        await super().setup()
        if self._mount_opts is None:
            self._mount_opts = await self._probe()

    def _reconcile(self) -> None:
        """Unmount what a previous run left mounted here, then sweep (see the base class)."""
        for d in (self._root / "l", self._root / "empty"):
            d.mkdir(exist_ok=True)
        os.chmod(self._root / "empty", 0o555)
        prefix = str(self._root) + "/"
        mine = {str(self._mount_point(k)) for k, n in self._refs.items() if n > 0}
        stale = {m.point for m in read_mounts() if m.point.startswith(prefix) and m.fstype == "overlay"
                 and m.source == self._source and m.point not in mine}
        for mp in sorted(stale, key=len, reverse=True):
            umount(mp, detach=True)
        super()._reconcile()

    def _sweep(self) -> None:
        super()._sweep()
        remove_leftovers(self._root)  # probe directories
        for link in os.scandir(self._root / "l"):
            if os.path.islink(link.path) and not os.path.exists(link.path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(link.path)

    async def _probe(self) -> str:
        """Find overlay mount options this kernel accepts; Unavailable if overlay does not work."""
        probe = self._root / f".tmp-probe-{secrets.token_hex(4)}"
        for d in ("l1", "l2", "u", "w", "m"):
            (probe / d).mkdir(parents=True)
        last = ""
        try:
            for extra in _FEATURE_OPTS:
                opts = "lowerdir=l1:l2,upperdir=u,workdir=w" + (f",{extra}" if extra else "")
                try:
                    await asyncio.to_thread(mount, self._source, "m", fstype="overlay", options=opts, cwd=probe)
                except MountError as exc:
                    last = str(exc)
                    continue
                await asyncio.to_thread(umount, str(probe / "m"))
                try:  # overlayfs's volatile option (Linux 5.10)
                    await asyncio.to_thread(mount, self._source, "m", fstype="overlay", options=opts + ",volatile",
                                            cwd=probe)
                    await asyncio.to_thread(umount, str(probe / "m"))
                    self._volatile = True
                except MountError:
                    self._volatile = False
                return extra
        finally:
            await asyncio.to_thread(shutil.rmtree, probe, True)
        raise Unavailable(f"overlayfs cannot be mounted under {self._root} ({last}); use the vfs driver")

    def status(self) -> list[tuple[str, str]]:
        backing = ""
        best = ""
        with contextlib.suppress(OSError):
            for mp, fstype, _src in read_mounts():
                if (str(self._root) + "/").startswith(mp.rstrip("/") + "/") and len(mp) >= len(best):
                    best, backing = mp, fstype
        return [("Backing Filesystem", backing or "unknown"), ("Supports d_type", "true"),
                ("Layers", str(self._layer_count())), ("Mount options", self._mount_opts or "")]

    # ------------------------------------------------------------------ creating
    def _new_meta(self, key: str, parent: str | None, kind: str) -> _Meta:
        lower: list[str] = []
        if parent is not None:
            pmeta = self._read_meta(parent)
            lower = [pmeta.link, *pmeta.lower]
            if len(lower) > MAX_DEPTH:
                raise InvalidArgument(f"layer {key!r} would be {len(lower) + 1} layers deep; "
                                      f"overlay allows {MAX_DEPTH}")
        return _Meta(key=key, parent=parent, kind=kind, link=secrets.token_hex(13).upper(), lower=lower)

    def _populate(self, tmp: Path, meta: _Meta) -> Path:
        os.symlink(f"../layers/{_layer_id(meta.key)}/diff", self._root / "l" / meta.link)
        for d in ("diff", "work", "merged"):
            (tmp / d).mkdir()
        os.chmod(tmp / "diff", 0o755)
        return tmp / "diff"

    def _remove_extras(self, meta: _Meta) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._root / "l" / meta.link)

    def _files(self, key: str) -> Path:
        return self._dir(key) / "diff"

    # ------------------------------------------------------------------ mounting
    def _mount_options(self, meta: _Meta, volatile: bool = False) -> str:
        rel = f"layers/{_layer_id(meta.key)}"
        if meta.kind == "rw":
            lowers = [f"l/{x}" for x in meta.lower] or ["empty"]
            opts = f"lowerdir={':'.join(lowers)},upperdir={rel}/diff,workdir={rel}/work"
            if volatile:  # no sync of the upper filesystem at unmount, no fsync passthrough
                opts += ",volatile"
        else:
            lowers = [f"l/{meta.link}"] + ([f"l/{x}" for x in meta.lower] or ["empty"])
            opts = f"ro,lowerdir={':'.join(lowers)}"
        if self._mount_opts:
            opts += "," + self._mount_opts
        if len(opts) > 4000:
            raise InvalidArgument(f"layer {meta.key!r}: overlay mount options too long ({len(opts)} bytes)")
        return opts

    def _mount_point(self, key: str) -> Path:
        return self._dir(key) / "merged"

    def _direct_options(self, meta: _Meta, volatile: bool = False) -> tuple[int, bytes] | None:
        """(mount flags, overlay options with absolute paths) for mount(2), or None when they
        do not fit in one page (then ``/bin/mount`` mounts it with relative paths)."""
        flags, opts = 0, self._mount_options(meta, volatile)
        if opts.startswith("ro,"):
            flags, opts = MS_RDONLY, opts[3:]
        root = str(self._root)
        parts = []
        for opt in opts.split(","):
            name, sep, value = opt.partition("=")
            if name in ("lowerdir", "upperdir", "workdir") and sep:
                value = ":".join(p if p.startswith("/") else f"{root}/{p}" for p in value.split(":"))
                opt = f"{name}={value}"
            parts.append(opt)
        data = os.fsencode(",".join(parts))
        return (flags, data) if len(data) <= MAX_DATA else None

    def _mount_direct(self, target: str, flags: int, data: bytes) -> None:
        """mount(2) of overlay on ``target``: no mount(8) process (a fork and exec, and
        libmount's parsing: about 1 ms of each container start's CPU, measured with perf)."""
        if _libc().mount(os.fsencode(self._source), os.fsencode(target), b"overlay", flags, data) != 0:
            err = ctypes.get_errno()
            raise MountError(f"mount of {target} failed: {os.strerror(err)}")

    async def _mount_layer(self, meta: _Meta, volatile: bool = False) -> None:
        if self._mount_opts is None:
            raise Unavailable("overlay driver used before setup()")
        volatile = volatile and meta.kind == "rw" and self._volatile
        if meta.kind == "rw":
            # a volatile mount leaves work/work/incompat/volatile, and overlayfs refuses the
            # next mount of that upper while it is there (its writes may be lost after a host
            # crash): a layer mounted again (a daemon restarted under a running container) is
            # used as it is, as podman does
            incompat = self._dir(meta.key) / "work" / "work" / "incompat"
            if incompat.exists():
                await asyncio.to_thread(shutil.rmtree, incompat, True)
        direct = self._direct_options(meta, volatile)
        if direct is not None:
            await asyncio.to_thread(self._mount_direct, str(self._mount_point(meta.key)), *direct)
            return
        await asyncio.to_thread(mount, self._source, f"layers/{_layer_id(meta.key)}/merged", fstype="overlay",
                                options=self._mount_options(meta, volatile), cwd=self._root)

    async def _unmount_layer(self, key: str) -> None:
        await asyncio.to_thread(umount, str(self._mount_point(key)))

    # ------------------------------------------------------------------ diff
    def _write_diff(self, key: str, writer: tarsafe.TarWriter) -> None:
        self._walk_diff(writer, self._files(key), "")

    def _walk_diff(self, w: tarsafe.TarWriter, root: Path, rel: str) -> None:
        base = root / rel if rel else root
        for entry in sorted(os.scandir(base), key=lambda e: e.name):
            child = f"{rel}/{entry.name}" if rel else entry.name
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                w.add_whiteout(child)
            elif stat.S_ISDIR(st.st_mode):
                w.add(root, child)
                opaque = b""
                with contextlib.suppress(OSError):
                    opaque = os.getxattr(entry.path, tarsafe.OVERLAY_OPAQUE_XATTR, follow_symlinks=False)
                if opaque == b"y":
                    w.add_opaque(child)
                self._walk_diff(w, root, child)
            else:
                w.add(root, child)


__all__ = ["MountError", "OverlayDriver", "read_mounts"]
