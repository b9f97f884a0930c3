"""The ``local`` volume driver: named volumes as directories, tmpfs mounts or bind mounts.

Layout under the driver's data dir::

    volumes/<name>/_data       the mount point handed to containers
    volumes/<name>/opts.json   the creation options
    volumes/<name>/refs.json   {container ID: mount count}, rewritten atomically on each change

Options follow Docker's local driver: none (a plain directory), or ``type``/``device``/``o``:

* ``type=tmpfs`` (``device`` optional, ``o`` tmpfs options such as ``size=64m,mode=1777``);
* ``o=bind`` (plus ``ro``, ``nosuid``...) with ``device=/absolute/dir`` and ``type`` absent or
  ``none``.

Anything else is :class:`~dockyard.errors.InvalidArgument`. tmpfs and bind volumes are mounted on
``_data`` when their first container reference appears and unmounted when the last goes; tmpfs
mounts carry ``dockyard-<owner>`` as source unless a device is named. ``setup()`` unmounts such
mounts left without references by a previous run and remounts referenced ones that vanished.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import secrets
import shutil
from pathlib import Path
from typing import ClassVar

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.layerdirs import remove_leftovers, tree_size
from dockyard.mounts import MountError, mount, read_mounts, umount
from dockyard.specs import DriverContext, DriverInfo, VolumeDriver
from dockyard.specs.storage import VolumeMount

log = logging.getLogger(__name__)

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
KNOWN_OPTIONS = frozenset({"type", "device", "o"})
_TMPFS_OPT_RE = re.compile(r"^(size|mode|uid|gid|nr_inodes|nr_blocks|huge|mpol)=[A-Za-z0-9%._:-]+$"
                           r"|^(ro|rw|noexec|exec|nosuid|suid|nodev|dev|noatime|relatime|strictatime)$")
_BIND_FLAGS = frozenset({"bind", "rbind", "ro", "rw", "nosuid", "suid", "nodev", "dev", "noexec", "exec"})


def _read_mount_points() -> set[str]:
    return {m.point for m in read_mounts()}


def validate_options(options: dict[str, str]) -> dict[str, str]:
    """Check ``options`` the way Docker's local driver does; returns the normalised options."""
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise InvalidArgument(f"invalid option(s) for the local volume driver: {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(KNOWN_OPTIONS))})")
    opts = {k: str(v) for k, v in options.items()}
    if not opts:
        return {}
    mtype = opts.get("type", "")
    flags = [x for x in opts.get("o", "").split(",") if x]
    device = opts.get("device", "")
    if mtype == "tmpfs":
        bad = [x for x in flags if not _TMPFS_OPT_RE.fullmatch(x)]
        if bad:
            raise InvalidArgument(f"invalid tmpfs option(s): {', '.join(bad)}")
        if device and not re.fullmatch(r"[A-Za-z0-9_.-]+", device):
            raise InvalidArgument(f"invalid tmpfs device name {device!r}")
        return opts
    if mtype in ("", "none") and ("bind" in flags or "rbind" in flags):
        bad = [x for x in flags if x not in _BIND_FLAGS]
        if bad:
            raise InvalidArgument(f"invalid bind option(s): {', '.join(bad)}")
        if not device:
            raise InvalidArgument("a bind volume needs device=/absolute/path")
        if not os.path.isabs(device) or "\x00" in device:
            raise InvalidArgument(f"bind device {device!r} must be an absolute path")
        if not os.path.isdir(device):
            raise InvalidArgument(f"bind device {device!r} is not an existing directory")
        return opts
    if mtype not in ("", "none", "tmpfs"):
        raise InvalidArgument(f"unsupported volume type {mtype!r} (supported: tmpfs, or o=bind with a device)")
    raise InvalidArgument("options device/o need type=tmpfs or o=bind")


class LocalVolumeDriver(VolumeDriver):
    """Named volumes under the driver's data dir."""

    info: ClassVar[DriverInfo] = DriverInfo(
        name="local", kind="volume",
        description="named volumes as local directories, tmpfs mounts or bind mounts",
        capabilities=frozenset({"tmpfs", "bind"}),
    )

    def __init__(self, context: DriverContext) -> None:
        super().__init__(context)
        self._root = Path(context.data_dir) / "volumes"
        self._lock = asyncio.Lock()
        self._source = f"dockyard-{context.owner}"
        self._problems: dict[str, str] = {}  # volume -> why setup() could not restore its mount
        self._swept = False  # sweep staging leftovers at the first setup() only

    # ------------------------------------------------------------------ paths and state
    def _dir(self, name: str) -> Path:
        if not isinstance(name, str) or not NAME_RE.fullmatch(name):
            raise InvalidArgument(f"invalid volume name {name!r}: must match {NAME_RE.pattern}")
        return self._root / name

    def _opts(self, name: str) -> dict[str, str]:
        try:
            return json.loads((self._dir(name) / "opts.json").read_text())
        except FileNotFoundError:
            raise NotFound(f"volume {name!r} not found") from None

    def _refs(self, name: str) -> dict[str, int]:
        try:
            return json.loads((self._dir(name) / "refs.json").read_text())
        except FileNotFoundError:
            return {}

    def _save_refs(self, name: str, refs: dict[str, int]) -> None:
        path = self._dir(name) / "refs.json"
        tmp = path.with_name(f".refs-{secrets.token_hex(4)}")
        with open(tmp, "w") as f:
            json.dump(refs, f, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)

    def _is_mounted(self, name: str) -> bool:
        return str(self._dir(name) / "_data") in _read_mount_points()

    def _mount_device(self, name: str, opts: dict[str, str]) -> None:
        target = str(self._dir(name) / "_data")
        if opts.get("type") == "tmpfs":
            mount(opts.get("device") or self._source, target, fstype="tmpfs", options=opts.get("o"))
        else:
            mount(opts["device"], target, options=opts["o"])

    # ------------------------------------------------------------------ life cycle
    async def setup(self) -> None:
        self._root.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._reconcile)

    def _reconcile(self) -> None:
        if not self._swept:
            self._swept = True
            remove_leftovers(self._root, (".tmp-",))
        mounted = _read_mount_points()
        for entry in os.scandir(self._root):
            if not NAME_RE.fullmatch(entry.name):
                continue
            try:
                opts = self._opts(entry.name)
            except NotFound:
                continue
            if not opts:
                continue
            data = str(self._dir(entry.name) / "_data")
            in_use = sum(self._refs(entry.name).values()) > 0
            self._problems.pop(entry.name, None)
            if data in mounted and not in_use:
                umount(data, detach=True)
            elif data not in mounted and in_use:
                try:
                    self._mount_device(entry.name, opts)
                except MountError as exc:  # one broken volume must not stop the others
                    self._problems[entry.name] = str(exc)
                    log.warning("volume %s: %s", entry.name, exc)

    def status(self) -> list[tuple[str, str]]:
        n = 0
        with contextlib.suppress(FileNotFoundError):
            n = sum(1 for e in os.scandir(self._root) if NAME_RE.fullmatch(e.name))
        out = [("Volumes", str(n))]
        out += [(f"Volume {name}", problem) for name, problem in sorted(self._problems.items())]
        return out

    # ------------------------------------------------------------------ the API
    def _create(self, name: str, options: dict[str, str]) -> str:
        target = self._dir(name)
        opts = validate_options(dict(options))
        if target.exists():
            existing = self._opts(name)
            if existing != opts:
                raise Conflict(f"volume {name!r} already exists with different options")
            return str(target / "_data")
        tmp = self._root / f".tmp-{name}-{secrets.token_hex(4)}"
        try:
            (tmp / "_data").mkdir(parents=True)
            os.chmod(tmp / "_data", 0o755)
            (tmp / "opts.json").write_text(json.dumps(opts, sort_keys=True))
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            if target.exists() and self._opts(name) == opts:
                return str(target / "_data")  # lost a race against an identical create
            raise
        return str(target / "_data")

    async def create(self, name: str, options: dict[str, str]) -> str:
        async with self._lock:
            return await asyncio.to_thread(self._create, name, options)

    def _remove(self, name: str) -> None:
        self._opts(name)
        refs = self._refs(name)
        if sum(refs.values()) > 0:
            raise Conflict(f"volume {name!r} is in use by container(s) {', '.join(sorted(refs))}")
        data = str(self._dir(name) / "_data")
        if self._is_mounted(name):
            umount(data)
        if self._is_mounted(name):
            raise Conflict(f"volume {name!r} is still mounted at {data}")
        trash = self._root / f".tmp-rm-{name}-{secrets.token_hex(4)}"
        os.rename(self._dir(name), trash)
        shutil.rmtree(trash)

    async def remove(self, name: str) -> None:
        async with self._lock:
            await asyncio.to_thread(self._remove, name)

    def _mount(self, name: str, container_id: str) -> VolumeMount:
        opts = self._opts(name)
        if not container_id:
            raise InvalidArgument("a container ID is needed to mount a volume")
        refs = self._refs(name)
        if opts and sum(refs.values()) == 0 and not self._is_mounted(name):
            self._mount_device(name, opts)
        refs[container_id] = refs.get(container_id, 0) + 1
        self._save_refs(name, refs)
        return VolumeMount(path=str(self._dir(name) / "_data"))

    async def mount(self, name: str, container_id: str) -> VolumeMount:
        async with self._lock:
            return await asyncio.to_thread(self._mount, name, container_id)

    def _unmount(self, name: str, container_id: str) -> None:
        opts = self._opts(name)
        refs = self._refs(name)
        if container_id not in refs:
            return  # this container holds no reference: releasing is idempotent
        refs[container_id] -= 1
        if refs[container_id] <= 0:
            del refs[container_id]
        if opts and not refs and self._is_mounted(name):
            umount(str(self._dir(name) / "_data"))
        self._save_refs(name, refs)

    async def unmount(self, name: str, container_id: str) -> None:
        async with self._lock:
            await asyncio.to_thread(self._unmount, name, container_id)

    async def list(self) -> list[str]:
        def scan() -> list[str]:
            if not self._root.is_dir():
                return []
            return sorted(e.name for e in os.scandir(self._root)
                          if NAME_RE.fullmatch(e.name) and os.path.isfile(os.path.join(e.path, "opts.json")))
        return await asyncio.to_thread(scan)

    def _usage(self, name: str) -> int:
        opts = self._opts(name)
        if opts and not self._is_mounted(name):
            return -1
        return tree_size(self._dir(name) / "_data")

    async def usage(self, name: str) -> int:
        return await asyncio.to_thread(self._usage, name)

    async def references(self, name: str) -> dict[str, int]:
        """The persisted mount counts of ``name`` by container ID."""
        self._opts(name)
        return self._refs(name)

    async def options(self, name: str) -> dict[str, str]:
        """The options ``name`` was created with (``opts.json``); NotFound when absent."""
        return dict(self._opts(name))
