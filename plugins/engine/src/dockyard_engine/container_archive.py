"""Portable checkpoint archives: ``dockyard container checkpoint --export`` and ``restore
--import``, in the layout podman and the kubelet use (:mod:`dockyard.checkpoints`).

Export checkpoints the container into a staging directory under the container's own
directory (as :class:`~dockyard_engine.container_checkpoint.Checkpoints` does, so a container
that is not left running is recorded as checkpointed, its network kept), then adds what the
target needs besides CRIU's images: the container (our document and podman's fields in
``config.dump``), the OCI spec, its addresses, the writable layer's changes (the storage
driver's diff, whiteouts turned into ``deleted.files``) and its named volumes.

Import creates a container from the archive (ours: the same configuration; podman's: the
command, environment, working directory, TTY and runtime of its spec, on the default network),
asks for the archive's addresses on networks of the same name unless told not to, applies the
layer's changes and volumes, and starts it from the images. The image must exist here (only the
writable layer travels, as with podman). A failed import removes the container it made.

A migration's target imports in two steps (``CheckpointImport.prepare``, then ``container``):
the container and its network sandbox from the documents alone while the source still runs,
then, once the archive is complete, only the layer's changes and the restore.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import tarfile
from pathlib import Path
from typing import Any

from dockyard import checkpoints as layout
from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.model import (
    Container,
    ContainerConfig,
    ContainerStatus,
    EndpointSettings,
    HostConfig,
    from_dict,
    new_id,
)
from dockyard.services.containers import Checkpoint, CheckpointCreate, CheckpointImport, ContainerCreate
from dockyard.specs.arch import CheckpointDriver, CheckpointRequest
from dockyard_engine.container_checkpoint import Checkpoints
from dockyard_engine.container_context import ContainerContext
from dockyard_engine.container_create import Creation

#: the mode podman gives a container's root directory
PODMAN_ROOT_MODE = 0o555


class CheckpointArchives:
    """Export and import of portable checkpoint archives."""

    def __init__(self, ctx: ContainerContext, creation: Creation, checkpoints: Checkpoints) -> None:
        self.ctx = ctx
        self.creation = creation
        self.checkpoints = checkpoints

    def _staging(self, prefix: str) -> Path:
        path = self.ctx.kernel.config.data_root / "tmp" / f"{prefix}-{new_id()[:16]}"
        path.mkdir(parents=True)
        return path

    # ------------------------------------------------------------------ export
    async def export(self, ref: str, out_path: str, req: CheckpointCreate) -> Checkpoint:
        ctx = self.ctx
        c = ctx.get(ref)
        staging = self._staging("export")
        try:
            async with ctx.lock(c.id):
                c = ctx.load(c.id)
                drv = await ctx.storage()
                if c.state.status is ContainerStatus.RUNNING:
                    # CRIU checks the mode of the root it restores into, and podman makes a
                    # container's root 0555 (Docker 0755): dump with podman's, so the archive
                    # restores there too (our import takes whatever mode the dump has)
                    rootfs = await drv.mount(c.id)
                    try:
                        await asyncio.to_thread(os.chmod, rootfs, PODMAN_ROOT_MODE)
                    finally:
                        with contextlib.suppress(Exception):
                            await drv.unmount(c.id)
                done = await self.checkpoints.dump_locked(c, staging / layout.CHECKPOINT_DIR, req)
                if req.keep:  # the dump stays the container's checkpoint req.name (hard links, no copy)
                    kept = self.checkpoints.path(c, req.name, req.directory)
                    await asyncio.to_thread(shutil.copytree, staging / layout.CHECKPOINT_DIR, kept,
                                            copy_function=os.link)
                c = ctx.load(c.id)
                rt = await ctx.runtime(c)
                spec = rt.checkpoint_spec(c.id) if isinstance(rt, CheckpointDriver) else {}
                layer = staging / "layer.tar"
                await drv.diff(c.id, str(layer))
                root_mode = PODMAN_ROOT_MODE
                volumes = {} if req.ignore_volumes else {
                    m.name: ctx.volumes.get(m.name) for m in c.mounts
                    if m.type == "volume" and m.name and not ctx.volumes.get(m.name).anonymous}
            await asyncio.to_thread(self._write, c, spec, staging, layer, volumes, out_path, root_mode,
                                    req.compression)
            return done
        finally:
            await asyncio.to_thread(shutil.rmtree, staging, True)

    def _write(self, c: Container, spec: dict[str, Any], staging: Path, layer: Path, volumes: dict[str, Any],
               out_path: str, root_mode: int, compression: str = "gzip") -> None:
        deleted = layout.layer_to_rootfs_diff(layer, staging / layout.ROOTFS_DIFF, root_mode)
        layer.unlink()
        (staging / layout.DELETED_FILES).write_text(json.dumps(deleted))
        for member, doc in layout.container_documents(c, spec).items():
            (staging / member).write_text(json.dumps(doc))
        (staging / layout.SPEC_DUMP).write_text(json.dumps(spec))
        if volumes:
            vdir = staging / layout.VOLUMES_DIR
            vdir.mkdir()
            for name, vol in volumes.items():
                with tarfile.open(vdir / f"{name}.tar", "w", format=tarfile.PAX_FORMAT) as tf:
                    if vol.mountpoint and os.path.isdir(vol.mountpoint):
                        for entry in sorted(os.listdir(vol.mountpoint)):
                            tf.add(os.path.join(vol.mountpoint, entry), arcname=entry)
        layout.write_archive(staging, out_path, compression)

    # ------------------------------------------------------------------ import
    async def import_(self, req: CheckpointImport) -> Container:
        if req.prepare:
            return await self._prepare(req)
        if req.container:
            return await self._restore_prepared(req)
        staging = self._staging("import")
        created: Container | None = None
        try:
            arc = await asyncio.to_thread(layout.read_archive, req.archive_path, staging / "archive")
            create = self._create_request(arc, req)
            created = await self.creation.create(create)
            await self._apply_layer(arc, created)
            if not req.ignore_volumes:
                await self._volumes(arc, created)
            restore = CheckpointRequest(image_dir=str(arc.images), checkpointed_spec=arc.spec or None,
                                        page_server=req.page_server, lazy_pages=bool(req.page_server))
            c = await self.checkpoints.lifecycle.start_container(created.id, restore=restore)
            created = None
            return c
        finally:
            if created is not None:
                with contextlib.suppress(DockyardError):
                    await self.checkpoints.lifecycle.remove(created.id, force=True, volumes=True)
            await asyncio.to_thread(shutil.rmtree, staging, True)

    async def _prepare(self, req: CheckpointImport) -> Container:
        """Step one of two (:attr:`CheckpointImport.prepare`): the container, from the documents
        alone, and its network sandbox with the archive's addresses, kept as a checkpointed
        container's is (so the restore joins it at once) when no network is global in scope
        (a global address is still the source's until it gives it up)."""
        ctx = self.ctx
        arc = await asyncio.to_thread(layout.read_documents, req.archive_path)
        created = await self.creation.create(self._create_request(arc, req))
        try:
            if self._local_networks_only(created):
                async with ctx.lock(created.id):
                    c = ctx.load(created.id)
                    _netns, sandbox = await self.checkpoints.setup.setup_network(c)
                    c.state.sandbox_key = sandbox
                    c.state.checkpoint = str(Path(req.archive_path) / layout.CHECKPOINT_DIR)
                    ctx.put(c)
                    created = c
        except BaseException:
            with contextlib.suppress(DockyardError):
                await self.checkpoints.lifecycle.remove(created.id, force=True, volumes=True)
            raise
        return created

    def _local_networks_only(self, c: Container) -> bool:
        svc = self.ctx.networks
        if svc is None or not c.networks or (c.host_config.network_mode or "default").startswith(("host", "container:")):
            return False
        try:
            return all(svc.get(name).scope != "global" for name in c.networks)
        except NotFound:
            return False

    async def _restore_prepared(self, req: CheckpointImport) -> Container:
        """Step two: the archive is complete; apply the layer's changes and restore into the
        prepared container (a failure removes it, as a failed import does)."""
        ctx = self.ctx
        c = ctx.get(req.container)
        try:
            arc = await asyncio.to_thread(layout.read_archive, req.archive_path, req.archive_path)
            await self._apply_layer(arc, c)
            if not req.ignore_volumes:
                await self._volumes(arc, c)
            restore = CheckpointRequest(image_dir=str(arc.images), checkpointed_spec=arc.spec or None,
                                        page_server=req.page_server, lazy_pages=bool(req.page_server))
            return await self.checkpoints.lifecycle.start_container(c.id, restore=restore)
        except BaseException:
            with contextlib.suppress(DockyardError):
                await self.checkpoints.lifecycle.remove(c.id, force=True, volumes=True)
            raise

    async def _apply_layer(self, arc: layout.Archive, c: Container) -> None:
        drv = await self.ctx.storage()
        rootfs = await drv.mount(c.id)
        try:
            await asyncio.to_thread(layout.apply_rootfs_diff, arc, rootfs)
            mode = await asyncio.to_thread(_dumped_root_mode, arc)
            if mode is not None:  # CRIU wants the dumped root's mode: no failed first restore
                await asyncio.to_thread(os.chmod, rootfs, mode)
        finally:
            with contextlib.suppress(Exception):
                await drv.unmount(c.id)

    def _create_request(self, arc: layout.Archive, req: CheckpointImport) -> ContainerCreate:
        ours = arc.ours
        if ours is not None:
            old = from_dict(Container, ours)
            cfg, hc = old.config, old.host_config
            cfg.image = self._image_ref(cfg.image, old.image_id)
            networks = {name: EndpointSettings(aliases=list(ep.aliases), driver_opts=dict(ep.driver_opts),
                                               mac_address="" if req.ignore_static_mac else ep.mac_address)
                        for name, ep in old.networks.items()}
            name = req.name or old.name
        else:  # podman's (or the kubelet's): what its spec says about the process
            proc = arc.spec.get("process") or {}
            image = self._image_ref(str(arc.config.get("rootfsImageName") or arc.config.get("RawImageName") or ""),
                                    str(arc.config.get("rootfsImageID") or ""))
            cfg = ContainerConfig(image=image, env=list(proc.get("env") or []), working_dir=str(proc.get("cwd") or ""),
                                  tty=bool(proc.get("terminal")), hostname=str(arc.spec.get("hostname") or ""),
                                  cmd=list(proc.get("args") or []))
            user = proc.get("user") or {}
            if user.get("uid") or user.get("gid"):
                cfg.user = f"{user.get('uid', 0)}:{user.get('gid', 0)}"
            hc = HostConfig(runtime=str(arc.config.get("runtime") or arc.config.get("ociRuntime") or "runc"))
            networks = {}
            name = req.name or str(arc.config.get("name") or "")
        if not req.ignore_static_ip:
            svc = self.ctx.networks
            for net, addr in arc.networks.items():
                if svc is None:
                    break
                with contextlib.suppress(NotFound):
                    svc.get(net)
                    networks.setdefault(net, EndpointSettings()).ipam_ipv4 = addr.ip
        cfg.mac_address = ""
        return ContainerCreate(config=cfg, host_config=hc, name=name, entrypoint=list(cfg.entrypoint),
                               cmd=list(cfg.cmd), networks=networks)

    def _image_ref(self, name: str, image_id: str) -> str:
        """The archive's image by name when it resolves here to the same ID, else by ID."""
        want = image_id if not image_id or image_id.startswith("sha256:") else "sha256:" + image_id
        for ref in (name, want):
            if not ref:
                continue
            with contextlib.suppress(NotFound, InvalidArgument):
                img = self.ctx.image(ref)
                if not want or img.id == want:
                    return ref
        raise NotFound(f"the checkpoint's image {name or want} ({want or 'no ID'}) is not here: only the writable "
                       "layer travels in a checkpoint archive; pull or load the same image first")

    async def _volumes(self, arc: layout.Archive, c: Container) -> None:
        from dockyard import tarsafe

        for name, tar in arc.volumes().items():
            try:
                vol = self.ctx.volumes.get(name)
            except NotFound:
                continue  # not one this container uses
            if vol.mountpoint:
                await asyncio.to_thread(tarsafe.extract, tar, vol.mountpoint)


def _dumped_root_mode(arc: layout.Archive) -> int | None:
    """The container root's mode the dump was taken with: the ``./`` entry an export writes
    first into ``rootfs-diff.tar`` (None when the archive has none, e.g. podman's)."""
    if arc.rootfs_diff is None:
        return None
    with tarfile.open(arc.rootfs_diff, "r:") as tf:
        first = tf.next()
    if first is not None and first.isdir() and first.name in ("./", ".", ""):
        return first.mode & 0o7777
    return None
