"""A base for layer drivers that keep one directory per layer (overlay, vfs).

Layout under the driver's data dir::

    layers/<id>/meta.json   the layer's :class:`LayerMeta` (drivers add fields)
    layers/<id>/...         the driver's own files (see the hooks below)
    layers/.tmp-*           staging of a layer being created, renamed to <id> when complete
    layers/.trash-*         a layer being removed, renamed out of sight before deletion

``<id>`` is the sha256 of the layer key (keys are opaque and may hold ``/`` or ``:``).
:class:`DirectoryLayerDriver` does the records, listing, creation through a staging directory,
removal with its conflict checks, mount reference counting and the leftover sweep; a driver
says how its files are laid out (:meth:`~DirectoryLayerDriver._populate`,
:meth:`~DirectoryLayerDriver._files`), how a layer is mounted and how its diff is written.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import ClassVar, Generic, TypeVar

from dockyard import tarsafe
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.specs import DriverContext, LayerDriver
from dockyard.specs.storage import LayerInfo

META = "meta.json"
LEFTOVER_PREFIXES = (".tmp-", ".trash-")


def layer_id(key: str) -> str:
    """The directory name of layer ``key``."""
    return hashlib.sha256(key.encode()).hexdigest()


def tree_size(root: str | os.PathLike[str]) -> int:
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


def remove_leftovers(directory: str | os.PathLike[str], prefixes: tuple[str, ...] = LEFTOVER_PREFIXES) -> None:
    """Delete the entries of ``directory`` named with one of ``prefixes`` (interrupted work)."""
    for entry in os.scandir(directory):
        if entry.name.startswith(prefixes):
            shutil.rmtree(entry.path, ignore_errors=True)


@dataclass
class LayerMeta:
    """A layer's ``meta.json``. Drivers subclass it; their fields need defaults."""

    key: str
    parent: str | None
    kind: str  # "ro" (applied, immutable) | "rw" (prepared)
    size: int = 0
    diff_id: str = ""

    def info(self) -> LayerInfo:
        return LayerInfo(key=self.key, parent=self.parent, size=self.size, diff_id=self.diff_id)


MetaT = TypeVar("MetaT", bound=LayerMeta)


class DirectoryLayerDriver(LayerDriver, Generic[MetaT]):
    """A :class:`LayerDriver` keeping each layer in ``layers/<id>/`` with a ``meta.json``.

    Subclasses set :attr:`meta_class` and :attr:`whiteouts` and implement :meth:`_populate`,
    :meth:`_files` and :meth:`_write_diff`; drivers that really mount also override
    :meth:`_mount_point`, :meth:`_mount_layer` and :meth:`_unmount_layer`. :meth:`_new_meta`,
    :meth:`_populate`, :meth:`_write_diff`, :meth:`_remove_extras` and :meth:`_sweep` run in a
    worker thread and may block.
    """

    #: The record type stored in ``meta.json``.
    meta_class: type[MetaT]
    #: How Docker whiteouts in a layer tar are stored (see :mod:`dockyard.tarsafe`).
    whiteouts: ClassVar[tarsafe.WhiteoutStrategy]
    #: Whether extraction may replace files and symlinks inherited from the parent (full copies).
    replace_inherited: ClassVar[bool] = False

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self._root = Path(context.data_dir)
        self._lock = asyncio.Lock()  # guards _refs and the mounts they stand for
        self._refs: dict[str, int] = {}
        self._swept = False

    # ------------------------------------------------------------------ hooks
    @abc.abstractmethod
    def _populate(self, tmp: Path, meta: MetaT) -> Path:
        """Lay out new layer ``meta`` in its staging directory ``tmp``; return the directory its
        tar is extracted into. Anything made outside ``tmp`` is undone by :meth:`_remove_extras`."""

    @abc.abstractmethod
    def _files(self, key: str) -> Path:
        """The directory holding what layer ``key`` stores (what :meth:`usage` counts)."""

    @abc.abstractmethod
    def _write_diff(self, key: str, writer: tarsafe.TarWriter) -> None:
        """Write the changes of ``key`` against its parent."""

    def _mount_point(self, key: str) -> Path:
        """The path :meth:`mount` returns; by default the layer's files themselves."""
        return self._files(key)

    async def _mount_layer(self, meta: MetaT, volatile: bool = False) -> None:
        """Make :meth:`_mount_point` show the layer (called for its first reference);
        ``volatile`` as :meth:`LayerDriver.mount` takes it (drivers that cannot ignore it)."""

    async def _unmount_layer(self, key: str) -> None:
        """Undo :meth:`_mount_layer` (called when the last reference goes)."""

    def _remove_extras(self, meta: MetaT) -> None:
        """Delete what the layer owns outside its directory (after a removal or failed creation)."""

    def _new_meta(self, key: str, parent: str | None, kind: str) -> MetaT:
        """The record of a new layer; NotFound when ``parent`` does not exist."""
        if parent is not None:
            self._read_meta(parent)
        return self.meta_class(key=key, parent=parent, kind=kind)

    def _sweep(self) -> None:
        """Delete what interrupted creations and removals left behind."""
        remove_leftovers(self._layers)

    # ------------------------------------------------------------------ records
    @property
    def _layers(self) -> Path:
        return self._root / "layers"

    def _dir(self, key: str) -> Path:
        return self._layers / layer_id(key)

    def _read_meta(self, key: str) -> MetaT:
        try:
            data = json.loads((self._dir(key) / META).read_text())
        except FileNotFoundError:
            raise NotFound(f"layer {key!r} not found") from None
        return self.meta_class(**data)

    def _all_meta(self) -> list[MetaT]:
        out: list[MetaT] = []
        if not self._layers.is_dir():
            return out
        for entry in os.scandir(self._layers):
            if not entry.name.startswith("."):
                with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                    out.append(self.meta_class(**json.loads(Path(entry.path, META).read_text())))
        return out

    def _layer_count(self) -> int:
        with contextlib.suppress(FileNotFoundError):
            return sum(1 for e in os.scandir(self._layers) if not e.name.startswith("."))
        return 0

    # ------------------------------------------------------------------ life cycle
    async def setup(self) -> None:
        unknown = sorted(set(self.context.options))
        if unknown:
            raise InvalidArgument(f"{self.info.name}: unknown storage options {', '.join(unknown)}")
        self._layers.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._reconcile)

    def _reconcile(self) -> None:
        """Clean up after a previous run, at every ``setup()``.

        The sweep runs at the first ``setup()`` only: a later one may run while this instance
        has creations in flight, whose staging directories look like leftovers.
        """
        if not self._swept:
            self._swept = True
            self._sweep()

    # ------------------------------------------------------------------ creating
    def _create(self, key: str, parent: str | None, kind: str, tar_path: str | None) -> LayerInfo:
        if self._dir(key).exists():
            raise Conflict(f"layer {key!r} already exists")
        meta = self._new_meta(key, parent, kind)
        try:
            with tarsafe.staging_dir(self._dir(key)) as tmp:
                tree = self._populate(tmp, meta)
                if tar_path is not None:
                    res = tarsafe.extract(tar_path, tree, whiteouts=self.whiteouts,
                                          replace_inherited=self.replace_inherited)
                    meta.size, meta.diff_id = res.size, res.digest
                (tmp / META).write_text(json.dumps(asdict(meta)))
        except BaseException:
            self._remove_extras(meta)
            raise
        return meta.info()

    async def apply(self, key: str, parent: str | None, tar_path: str) -> LayerInfo:
        return await asyncio.to_thread(self._create, key, parent, "ro", tar_path)

    async def prepare(self, key: str, parent: str | None) -> None:
        await asyncio.to_thread(self._create, key, parent, "rw", None)

    # ------------------------------------------------------------------ mounting
    async def mount(self, key: str, volatile: bool = False) -> str:
        async with self._lock:
            meta = self._read_meta(key)
            if self._refs.get(key, 0) == 0:
                # passed on only when asked for: subclasses without the ``volatile`` capability
                # (never asked) keep their ``_mount_layer(meta)``
                await (self._mount_layer(meta, volatile=True) if volatile else self._mount_layer(meta))
            self._refs[key] = self._refs.get(key, 0) + 1
            return str(self._mount_point(key))

    async def unmount(self, key: str) -> None:
        async with self._lock:
            if not self._dir(key).is_dir():
                raise NotFound(f"layer {key!r} not found")
            n = self._refs.get(key, 0)
            if n > 1:
                self._refs[key] = n - 1
            elif n == 1:
                await self._unmount_layer(key)
                del self._refs[key]
            # n == 0: not mounted, releasing is idempotent

    # ------------------------------------------------------------------ diff
    def _write_tar(self, key: str, out_path: str) -> int:
        try:
            with tarsafe.TarWriter(out_path) as writer:
                self._write_diff(key, writer)
            return os.path.getsize(out_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(out_path)
            raise

    async def diff(self, key: str, out_path: str) -> int:
        self._read_meta(key)
        return await asyncio.to_thread(self._write_tar, key, out_path)

    # ------------------------------------------------------------------ removing, listing
    def _remove(self, key: str) -> None:
        meta = self._read_meta(key)
        children = sorted(m.key for m in self._all_meta() if m.parent == key)
        if children:
            raise Conflict(f"layer {key!r} has dependent layers: {', '.join(children[:5])}")
        target = self._dir(key)
        trash = self._layers / f".trash-{target.name}-{secrets.token_hex(4)}"
        os.rename(target, trash)  # atomic: the layer is gone even if deleting its files is cut short
        self._remove_extras(meta)
        shutil.rmtree(trash)

    async def remove(self, key: str) -> None:
        async with self._lock:
            if self._refs.get(key, 0) > 0:
                raise Conflict(f"layer {key!r} is mounted")
            await asyncio.to_thread(self._remove, key)

    async def exists(self, key: str) -> bool:
        return (self._dir(key) / META).is_file()

    async def list(self) -> list[str]:
        return sorted(m.key for m in await asyncio.to_thread(self._all_meta))

    async def usage(self, key: str) -> int:
        self._read_meta(key)
        return await asyncio.to_thread(tree_size, self._files(key))

    async def layer_info(self, key: str) -> LayerInfo:
        """The stored :class:`LayerInfo` of ``key``."""
        return self._read_meta(key).info()
