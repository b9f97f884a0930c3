"""The overlay layer driver: one directory per layer, stacked with overlayfs.

Layout under the driver's data dir::

    layers/<id>/meta.json   key, parent, kind (ro|rw), link, lower chain, size, diff ID
    layers/<id>/diff/       what this layer adds (overlay whiteouts: 0/0 char devices,
                            trusted.overlay.opaque=y on opaque directories)
    layers/<id>/work/       overlayfs work dir (read-write layers)
    layers/<id>/merged/     the mount point
    l/<short>               symlink to ../layers/<id>/diff, keeps lowerdir= short
    empty/                  an empty lower for layers without a parent

``<id>`` is the sha256 of the layer key (keys are opaque and may hold ``:``). Mounts are made
by ``/bin/mount`` run with the data dir as working directory, so ``lowerdir=l/AB..:l/CD..``
stays far below the one-page mount-option limit (about 120 layers). Every mount's source is
``dockyard-<owner>``, so reconciliation (and leak checks) recognise this daemon's mounts;
``setup()`` unmounts the ones a previous run left under this data dir.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

from dockyard import tarsafe
from dockyard.errors import Conflict, InvalidArgument, NotFound, Unavailable
from dockyard.specs import DriverContext, DriverInfo, LayerDriver
from dockyard.specs.storage import LayerInfo

MAX_DEPTH = 120
#: Mount options tried in order at setup: without redirect_dir/metacopy off, renaming a lower
#: directory or changing metadata would not copy the file up and the upper dir would not be a
#: complete diff.
_FEATURE_OPTS = ("index=off,redirect_dir=off,metacopy=off", "index=off,redirect_dir=off", "")
_MOUNT_TIMEOUT = 30.0
_MNT_DETACH = 2


class MountError(Unavailable):
    """A mount or unmount the driver needs failed."""


@dataclass
class _Meta:
    key: str
    parent: str | None
    kind: str  # "ro" (applied, immutable) | "rw" (prepared)
    link: str
    lower: list[str] = field(default_factory=list)  # links of ancestors, nearest first
    size: int = 0
    diff_id: str = ""


def _layer_id(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _unescape(field_: str) -> str:
    """Undo mountinfo's octal escapes (``\\040`` for a space)."""
    out, i = [], 0
    while i < len(field_):
        if field_[i] == "\\" and i + 4 <= len(field_) and field_[i + 1:i + 4].isdigit():
            out.append(chr(int(field_[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def read_mounts() -> list[tuple[str, str, str]]:
    """``(mount point, fstype, source)`` of every mount in this mount namespace."""
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields = left.split()
            rfields = right.split()
            if len(fields) >= 5 and len(rfields) >= 2:
                out.append((_unescape(fields[4]), rfields[0], _unescape(rfields[1])))
    return out


def _umount(path: str, detach: bool = False) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.umount2(os.fsencode(path), _MNT_DETACH if detach else 0) != 0:
        err = ctypes.get_errno()
        if err == errno.EINVAL:  # not a mount point (any more)
            return
        if err == errno.EBUSY:
            raise Conflict(f"{path} is busy and cannot be unmounted")
        raise MountError(f"umount {path}: {os.strerror(err)}")


class OverlayDriver(LayerDriver):
    """Layers as overlayfs lower/upper directories."""

    info: ClassVar[DriverInfo] = DriverInfo(
        name="overlay", kind="storage",
        description="overlayfs: one directory per layer, mounted as a stack (needs overlay in the kernel)",
        capabilities=frozenset({"xattrs", "opaque-dirs"}),
    )

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self._root = Path(context.data_dir)
        self._lock = asyncio.Lock()
        self._refs: dict[str, int] = {}
        self._mount_opts: str | None = None
        self._source = f"dockyard-{context.owner}"
        self._swept = False  # leftovers are swept at the first setup() only: later calls may
        # run while this instance has applies in flight (their staging dirs look like leftovers)

    # ------------------------------------------------------------------ paths
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
        out = []
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
            raise InvalidArgument(f"overlay: unknown storage options {', '.join(unknown)}")
        for d in (self._layers, self._root / "l", self._root / "empty"):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self._root / "empty", 0o555)
        await asyncio.to_thread(self._reconcile)
        if self._mount_opts is None:
            self._mount_opts = await self._probe()

    def _reconcile(self) -> None:
        """Unmount what a previous run left mounted here; sweep crashed applies and stale links."""
        prefix = str(self._root) + "/"
        mine = {str(self._dir(k) / "merged") for k, n in self._refs.items() if n > 0}
        stale = [mp for mp, fstype, source in read_mounts()
                 if mp.startswith(prefix) and fstype == "overlay" and source == self._source and mp not in mine]
        for mp in sorted(set(stale), key=len, reverse=True):
            _umount(mp, detach=True)
        if self._swept:
            return
        self._swept = True
        for parent in (self._root, self._layers):
            for entry in os.scandir(parent):
                if entry.name.startswith((".tmp-", ".trash-")):
                    shutil.rmtree(entry.path, ignore_errors=True)
        for link in os.scandir(self._root / "l"):
            if entry_is_dangling(link.path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(link.path)

    async def _probe(self) -> str:
        """Find overlay mount options this kernel accepts; Unavailable if overlay does not work."""
        probe = self._root / f".tmp-probe-{secrets.token_hex(4)}"
        dirs = [probe / n for n in ("l1", "l2", "u", "w", "m")]
        for d in dirs:
            d.mkdir(parents=True)
        last = ""
        try:
            for extra in _FEATURE_OPTS:
                opts = "lowerdir=l1:l2,upperdir=u,workdir=w" + (f",{extra}" if extra else "")
                try:
                    await self._run_mount(opts, "m", cwd=probe)
                except MountError as exc:
                    last = str(exc)
                    continue
                await asyncio.to_thread(_umount, str(probe / "m"))
                return extra
        finally:
            await asyncio.to_thread(shutil.rmtree, probe, True)
        raise Unavailable(f"overlayfs cannot be mounted under {self._root} ({last}); use the vfs driver")

    async def _run_mount(self, opts: str, target: str, cwd: Path) -> None:
        proc = await asyncio.create_subprocess_exec(
            "mount", "-t", "overlay", "-o", opts, self._source, target, cwd=str(cwd),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        try:
            _out, err = await asyncio.wait_for(proc.communicate(), _MOUNT_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise MountError(f"mount of {target} timed out") from None
        if proc.returncode != 0:
            raise MountError(f"mount of {target} failed: {err.decode(errors='replace').strip()}")

    def status(self) -> list[tuple[str, str]]:
        backing = ""
        best = ""
        with contextlib.suppress(OSError):
            for mp, fstype, _src in read_mounts():
                if (str(self._root) + "/").startswith(mp.rstrip("/") + "/") and len(mp) >= len(best):
                    best, backing = mp, fstype
        layers = 0
        with contextlib.suppress(FileNotFoundError):
            layers = sum(1 for e in os.scandir(self._layers) if not e.name.startswith("."))
        return [("Backing Filesystem", backing or "unknown"), ("Supports d_type", "true"),
                ("Layers", str(layers)), ("Mount options", self._mount_opts or "")]

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

    def _create(self, meta: _Meta, tar_path: str | None) -> LayerInfo:
        target = self._dir(meta.key)
        if target.exists():
            raise Conflict(f"layer {meta.key!r} already exists")
        link = self._root / "l" / meta.link
        os.symlink(f"../layers/{target.name}/diff", link)
        try:
            with tarsafe.staging_dir(target) as tmp:
                for d in ("diff", "work", "merged"):
                    (tmp / d).mkdir()
                os.chmod(tmp / "diff", 0o755)
                if tar_path is not None:
                    res = tarsafe.extract(tar_path, tmp / "diff", whiteouts=tarsafe.OverlayWhiteouts())
                    meta.size, meta.diff_id = res.size, res.digest
                (tmp / "meta.json").write_text(json.dumps(asdict(meta)))
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(link)
            raise
        return LayerInfo(key=meta.key, parent=meta.parent, size=meta.size, diff_id=meta.diff_id)

    async def apply(self, key: str, parent: str | None, tar_path: str) -> LayerInfo:
        async with self._lock:
            meta = self._new_meta(key, parent, "ro")
        return await asyncio.to_thread(self._create, meta, tar_path)

    async def prepare(self, key: str, parent: str | None) -> None:
        async with self._lock:
            meta = self._new_meta(key, parent, "rw")
        await asyncio.to_thread(self._create, meta, None)

    # ------------------------------------------------------------------ mounting
    def _mount_options(self, meta: _Meta) -> str:
        rel = f"layers/{_layer_id(meta.key)}"
        if meta.kind == "rw":
            lowers = [f"l/{x}" for x in meta.lower] or ["empty"]
            opts = f"lowerdir={':'.join(lowers)},upperdir={rel}/diff,workdir={rel}/work"
        else:
            lowers = [f"l/{meta.link}"] + ([f"l/{x}" for x in meta.lower] or ["empty"])
            opts = f"ro,lowerdir={':'.join(lowers)}"
        if self._mount_opts:
            opts += "," + self._mount_opts
        if len(opts) > 4000:
            raise InvalidArgument(f"layer {meta.key!r}: overlay mount options too long ({len(opts)} bytes)")
        return opts

    async def mount(self, key: str) -> str:
        async with self._lock:
            meta = self._read_meta(key)
            merged = self._dir(key) / "merged"
            if self._refs.get(key, 0) > 0:
                self._refs[key] += 1
                return str(merged)
            if self._mount_opts is None:
                raise Unavailable("overlay driver used before setup()")
            await self._run_mount(self._mount_options(meta), f"layers/{_layer_id(key)}/merged", cwd=self._root)
            self._refs[key] = 1
            return str(merged)

    async def unmount(self, key: str) -> None:
        async with self._lock:
            if not self._dir(key).is_dir():
                raise NotFound(f"layer {key!r} not found")
            n = self._refs.get(key, 0)
            if n <= 0:
                return  # not mounted: releasing is idempotent
            if n == 1:
                await asyncio.to_thread(_umount, str(self._dir(key) / "merged"))
                del self._refs[key]
            else:
                self._refs[key] = n - 1

    # ------------------------------------------------------------------ diff
    def _write_diff(self, key: str, out_path: str) -> int:
        diff = self._dir(key) / "diff"
        try:
            with tarsafe.TarWriter(out_path) as w:
                self._walk_diff(w, diff, "")
                w.close()
            return os.path.getsize(out_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(out_path)
            raise

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

    async def diff(self, key: str, out_path: str) -> int:
        self._read_meta(key)
        return await asyncio.to_thread(self._write_diff, key, out_path)

    # ------------------------------------------------------------------ removing, listing
    def _remove(self, key: str) -> None:
        meta = self._read_meta(key)
        children = sorted(m.key for m in self._all_meta() if m.parent == key)
        if children:
            raise Conflict(f"layer {key!r} has dependent layers: {', '.join(children[:5])}")
        target = self._dir(key)
        trash = self._layers / f".trash-{target.name}-{secrets.token_hex(4)}"
        os.rename(target, trash)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._root / "l" / meta.link)
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
        return await asyncio.to_thread(tree_size, self._dir(key) / "diff")

    async def layer_info(self, key: str) -> LayerInfo:
        """The stored :class:`LayerInfo` of ``key``."""
        meta = self._read_meta(key)
        return LayerInfo(key=meta.key, parent=meta.parent, size=meta.size, diff_id=meta.diff_id)


def entry_is_dangling(path: str) -> bool:
    return os.path.islink(path) and not os.path.exists(path)


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


__all__ = ["MountError", "OverlayDriver", "read_mounts", "tree_size"]
