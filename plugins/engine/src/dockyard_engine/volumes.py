"""The volume service: named and anonymous volumes over per-volume volume drivers.

A volume is a :class:`~dockyard.model.Volume` record plus the data its driver
(``await kernel.driver_ready("volume", volume.driver)``) keeps. Creation asks the driver first and
records after (a failed record write removes the driver's volume again); removal checks that no
container references the volume (its ``mounts``, ``host_config.mounts`` or named ``binds`` in the
state store), asks the driver, then deletes the record. The container service calls
:meth:`VolumeService.mount` / :meth:`VolumeService.unmount` around a container's run.

Events (after the change): volume ``create``, ``destroy``, ``mount``, ``unmount``, with the
attributes dockerd sends (``driver``; ``container``, ``destination``, ``read/write``,
``propagation`` for mounts).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import Callable
from typing import Any, cast

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.model import Container, Volume, now_iso
from dockyard.services import Service
from dockyard.services.volumes import volume_references
from dockyard.specs.storage import VolumeDriver

MAX_NAME = 255
NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")
_HEX64 = re.compile(r"^[a-f0-9]{64}$")




class VolumeService(Service):
    name = "volumes"

    def __init__(self, kernel: Any) -> None:
        super().__init__(kernel)
        self._lock = asyncio.Lock()

    async def driver(self, name: str) -> VolumeDriver:
        # the registry checked at load that a volume driver subclasses VolumeDriver
        return cast(VolumeDriver, await self.kernel.driver_ready("volume", name or "local"))

    async def start(self) -> None:
        """Reconcile records with the drivers that hold volumes: a volume the driver has but no
        record names (the daemon died between the two steps of a create) is adopted, as dockerd
        lists what its drivers hold; a record whose volume its driver no longer has is dropped.
        Drivers that cannot be loaded are left alone (their records stay)."""
        records = {v.name: v for v in self.list()}
        drivers = {v.driver for v in records.values()} | {"local"}
        for name in sorted(drivers):
            try:
                drv = await self.driver(name)
                held = set(await drv.list())
            except DockyardError:
                continue
            with self.store.transaction() as tx:
                for vol in records.values():
                    if vol.driver == name and vol.name not in held:
                        tx.delete(Volume, vol.id)
                for missing in sorted(held - set(records)):
                    mountpoint = str(drv.context.data_dir / "volumes" / missing / "_data")
                    options: dict[str, str] = {}
                    with contextlib.suppress(DockyardError):
                        options = await drv.options(missing)
                        mountpoint = await drv.create(missing, options)  # the existing volume's
                    tx.put(Volume(name=missing, driver=name, mountpoint=mountpoint, options=options,
                                  anonymous=_HEX64.fullmatch(missing) is not None))

    # ------------------------------------------------------------------ lookups
    def list(self) -> list[Volume]:
        return self.store.list(Volume)

    def get(self, name: str) -> Volume:
        vol = self.store.by_name(Volume, name) if name else None
        if vol is None:
            raise NotFound(f"get {name}: no such volume")
        return vol

    def users(self, name: str) -> list[str]:
        """IDs of the containers referencing volume ``name``."""
        return [c.id for c in self.store.list(Container) if name in volume_references(c)]

    def in_use(self) -> set[str]:
        used: set[str] = set()
        for c in self.store.list(Container):
            used |= volume_references(c)
        return used

    async def usage(self, vol: Volume) -> int:
        try:
            return await (await self.driver(vol.driver)).usage(vol.name)
        except DockyardError:
            return -1

    # ------------------------------------------------------------------ create, remove
    async def create(self, name: str = "", driver: str = "local", options: dict[str, str] | None = None,
                     labels: dict[str, str] | None = None, anonymous: bool = False) -> Volume:
        """Create volume ``name`` (a random 64-hex name when empty). An existing name is
        returned as is, as dockerd does; with another driver it is a Conflict."""
        driver = driver or "local"
        name = name or secrets.token_hex(32)
        if len(name.encode()) > MAX_NAME:  # a directory of that name cannot exist (NAME_MAX)
            raise InvalidArgument(f"create {name[:40]}...: volume name is too long ({len(name.encode())} bytes, "
                                  f"at most {MAX_NAME})")
        if not NAME_RE.fullmatch(name):
            raise InvalidArgument(f'create {name}: "{name}" includes invalid characters for a local volume name, '
                                  'only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host '
                                  "directory, use absolute path")
        opts = {str(k): str(v) for k, v in (options or {}).items()}
        async with self._lock:
            existing = self.store.by_name(Volume, name)
            if existing is not None:
                if existing.driver != driver:
                    raise Conflict(f"create {name}: volume name must be unique: a volume with the same name "
                                   f"already exists with driver {existing.driver!r}")
                return existing
            drv = await self.driver(driver)
            mountpoint = await drv.create(name, opts)
            vol = Volume(name=name, driver=driver, mountpoint=mountpoint, created=now_iso(),
                         labels=dict(labels or {}), options=opts, anonymous=anonymous)
            try:
                with self.store.transaction() as tx:
                    tx.put(vol)
            except BaseException:
                with contextlib.suppress(DockyardError, OSError):
                    await drv.remove(name)
                raise
        self.kernel.emit("volume", "create", name, driver=driver)
        return vol

    async def create_anonymous(self, driver: str = "local", options: dict[str, str] | None = None,
                               labels: dict[str, str] | None = None) -> Volume:
        """An anonymous volume (image ``VOLUME`` or ``-v /path``): 64-hex name, ``anonymous``."""
        return await self.create("", driver, options, labels, anonymous=True)

    async def remove(self, name: str, force: bool = False) -> None:
        """Remove volume ``name``: 409 while a container references it; ``force`` ignores a
        missing volume and drops the record even when the driver fails."""
        async with self._lock:
            vol = self.store.by_name(Volume, name)
            if vol is None:
                if force:
                    return
                raise NotFound(f"get {name}: no such volume")
            users = self.users(name)
            if users:
                raise Conflict(f"remove {name}: volume is in use - [{', '.join(users)}]")
            try:
                drv = await self.driver(vol.driver)
                await drv.remove(name)
            except NotFound:
                pass
            except DockyardError:
                if not force:
                    raise
            with self.store.transaction() as tx:
                tx.delete(Volume, vol.id)
        self.kernel.emit("volume", "destroy", name, driver=vol.driver)

    async def prune(self, match: Callable[[Volume], bool] | None = None) -> tuple[list[str], int]:
        """Remove every volume no container references (and ``match`` accepts);
        ``(names, bytes reclaimed)``."""
        used = self.in_use()
        deleted: list[str] = []
        reclaimed = 0
        for vol in self.list():
            if vol.name in used or (match is not None and not match(vol)):
                continue
            size = await self.usage(vol)
            try:
                await self.remove(vol.name)
            except (Conflict, NotFound):
                continue
            deleted.append(vol.name)
            reclaimed += max(size, 0)
        return deleted, reclaimed

    # ------------------------------------------------------------------ for the container service
    async def mount(self, name: str, container_id: str, destination: str = "", read_only: bool = False,
                    propagation: str = "") -> str:
        """Make volume ``name`` available to ``container_id``; returns the host path to bind."""
        vol = self.get(name)
        drv = await self.driver(vol.driver)
        mounted = await drv.mount(name, container_id)
        self.kernel.emit("volume", "mount", name, container=container_id, destination=destination,
                         driver=vol.driver, propagation=propagation, **{"read/write": str(not read_only).lower()})
        return mounted.path

    async def unmount(self, name: str, container_id: str) -> None:
        """Release ``container_id``'s use of volume ``name`` (idempotent)."""
        vol = self.get(name)
        drv = await self.driver(vol.driver)
        await drv.unmount(name, container_id)
        self.kernel.emit("volume", "unmount", name, container=container_id, driver=vol.driver)

