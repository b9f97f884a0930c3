"""A container's file system: ``docker cp`` (archive stat/get/put), ``docker diff``,
``docker export`` and ``docker commit``.

The rootfs is mounted by the ``storage`` driver for the duration of each call. A path inside a
bind or volume mount is read from (or written to) that mount's host source, as the container
sees it; the /etc files the runtime binds are the container's own copies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import posixpath
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

from dockyard.errors import Forbidden, InvalidArgument, NotFound
from dockyard.model import Container, ContainerStatus
from dockyard.services.containers import PathStat
from dockyard_engine import container_fs as cfs
from dockyard_engine.container_context import ContainerContext

#: files the runtime bind-mounts over (dockerd keeps them in a hidden init layer)
INIT_PATHS = ("/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/.dockerenv", "/dev", "/proc", "/sys",
              "/dev/shm", "/dev/pts", "/dev/console")


class ContainerFiles:
    """Reading and writing a container's files, and making an image of them."""

    def __init__(self, ctx: ContainerContext) -> None:
        self.ctx = ctx

    @contextlib.asynccontextmanager
    async def rootfs(self, ref: str) -> AsyncIterator[tuple[Container, str]]:
        """The container's root filesystem, mounted for the duration (archive, export)."""
        c = self.ctx.get(ref)
        drv = await self.ctx.storage()
        path = await drv.mount(c.id)
        try:
            yield c, path
        finally:
            with contextlib.suppress(Exception):
                await drv.unmount(c.id)

    def volume_paths(self, c: Container) -> list[tuple[str, str, bool]]:
        """(destination, host source, read-only) of mounts with a host source, for ``docker cp``."""
        out = []
        for m in c.mounts:
            src = m.source
            if m.type == "volume" and not src:
                with contextlib.suppress(NotFound):
                    src = self.ctx.volumes.get(m.name).mountpoint
            if src and m.type in ("bind", "volume"):
                out.append((m.destination, src, m.read_only))
        # the files the runtime binds over /etc (what the container sees there)
        for name in ("hostname", "hosts", "resolv.conf"):
            path = self.ctx.cdir(c.id) / name
            if path.exists():
                out.append((f"/etc/{name}", str(path), False))
        return sorted(out, key=lambda t: len(t[0]), reverse=True)

    def _root_for(self, c: Container, rootfs: str, path: str) -> tuple[str, str, bool]:
        """(root on the host, path inside it, read-only) of a container path for ``docker cp``:
        inside the source of the bind or volume mounted there, else inside the rootfs."""
        norm = "/" + path.strip("/")
        for dest, source, ro in self.volume_paths(c):
            d = dest.rstrip("/") or "/"
            if norm == d or norm.startswith(d + "/"):
                rest = norm[len(d):] or "/"
                return source, rest + ("/" if path.endswith("/") and rest != "/" else ""), ro
        return rootfs, path, False

    async def archive_stat(self, ref: str, path: str) -> PathStat:
        """``HEAD /containers/{id}/archive``: what ``path`` is in the container."""
        if not path:
            raise InvalidArgument("path is required")
        async with self.rootfs(ref) as (c, rootfs):
            root, inner, _ro = self._root_for(c, rootfs, path)
            _host, st = await asyncio.to_thread(cfs.path_stat, root, inner, ref)
        return _path_stat(st, path)

    async def archive_get(self, ref: str, path: str, out: BinaryIO) -> PathStat:
        """``docker cp CONTAINER:path -``: ``path`` as a tar written to ``out`` (in a thread)."""
        if not path:
            raise InvalidArgument("path is required")
        async with self.rootfs(ref) as (c, rootfs):
            root, inner, _ro = self._root_for(c, rootfs, path)
            host, st = await asyncio.to_thread(cfs.path_stat, root, inner, ref)
            if path.endswith("/.") or path.endswith("/"):
                host = cfs.resolve_in(root, inner)
            arcname = os.path.basename(path.rstrip("/").removesuffix("/.")) or "."
            if path.endswith("/."):
                arcname = os.path.basename(path[:-2].rstrip("/")) or "."
            await asyncio.to_thread(cfs.write_tar, host, arcname, out)
        return _path_stat(st, path)

    async def archive_put(self, ref: str, path: str, tar_path: str) -> None:
        """``docker cp - CONTAINER:path``: extract a tar into the directory ``path`` (hostile
        members refused by :func:`dockyard.tarsafe.extract`; read-only targets refused)."""
        from dockyard.tarsafe import extract

        if not path:
            raise InvalidArgument("path is required")
        async with self.rootfs(ref) as (c, rootfs):
            root, inner, ro = self._root_for(c, rootfs, path)
            if ro or c.host_config.read_only_rootfs and root == rootfs:
                raise Forbidden("container rootfs is marked read-only" if root == rootfs
                                else f"mounted volume is marked read-only: {path}")
            target = cfs.resolve_in(root, inner)
            if not target.exists():
                raise NotFound(f"Could not find the file {path} in container {ref}")
            if not target.is_dir():
                raise InvalidArgument("extraction point is not a directory")
            await asyncio.to_thread(extract, tar_path, str(target))

    async def changes(self, ref: str) -> list[dict[str, Any]]:
        """``docker diff``: paths of the read-write layer, Kind 0 modified, 1 added, 2 deleted
        (decided against the image's layers)."""
        import tempfile

        c = self.ctx.get(ref)
        drv = await self.ctx.storage()
        images = self.ctx.images
        try:
            key = images.top_layer_key(images.get(c.image_id))
        except NotFound:
            key = None
        fd, tmp = tempfile.mkstemp(prefix="dockyard-diff-")
        os.close(fd)
        lower = await drv.mount(key) if key else None
        try:
            await drv.diff(c.id, tmp)
            return await asyncio.to_thread(_diff_kinds, tmp, lower)
        finally:
            if key:
                with contextlib.suppress(Exception):
                    await drv.unmount(key)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    async def export(self, ref: str, out_path: str) -> None:
        async with self.rootfs(ref) as (c, root):
            await asyncio.to_thread(_tar_tree, root, out_path)
        self.ctx.emit(c, "export")

    async def commit(self, ref: str, repo: str = "", tag: str = "", comment: str = "", author: str = "",
                     changes: list[str] | None = None, pause: bool = True, config: dict[str, Any] | None = None) -> str:
        """Commit the container's changes as a new image (the images service's commit); a
        running container is paused meanwhile unless ``pause`` is false."""
        c = self.ctx.get(ref)
        rt = await self.ctx.runtime(c)
        paused = False
        if pause and c.state.status is ContainerStatus.RUNNING:
            with contextlib.suppress(Exception):
                await rt.pause(c.id)
                paused = True
        try:
            image = await self.ctx.images.commit(container=c, repo=repo, tag=tag, comment=comment, author=author,
                                                 changes=list(changes or []), config=config)
        finally:
            if paused:
                with contextlib.suppress(Exception):
                    await rt.resume(c.id)
        self.ctx.emit(c, "commit", comment=comment)
        return image.id


def _path_stat(st: dict[str, Any], path: str) -> PathStat:
    return PathStat(name=os.path.basename(path.rstrip("/")) or "/", size=st["size"], mode=st["mode"],
                    mtime=st["mtime"], link_target=st["linkTarget"])


def _diff_kinds(diff_tar: str, lower: str | None) -> list[dict[str, Any]]:
    """``[{"Path", "Kind"}]`` of a layer diff tar: whiteouts are deletions (2); other members
    are modified (0) when the image's tree at ``lower`` has them, else added (1)."""
    import tarfile

    out: dict[str, int] = {}
    with tarfile.open(diff_tar) as tf:
        for m in tf:
            name = m.name.strip("/").removeprefix("./")
            parent, _, base = name.rpartition("/")
            if base == ".wh..wh..opq":
                continue
            if base.startswith(".wh."):
                out["/" + (f"{parent}/" if parent else "") + base[4:]] = 2
                continue
            exists = lower is not None and os.path.lexists(os.path.join(lower, name))
            out["/" + name] = 0 if exists else 1
    # mount points the runtime made for its own files are not the container's changes
    # (and so is the directory they changed: /etc, when nothing else in it changed)
    for path in INIT_PATHS:
        if out.get(path) == 1:
            del out[path]
            parent = posixpath.dirname(path)
            if parent != "/" and out.get(parent) == 0 and not any(p.startswith(parent + "/") for p in out):
                del out[parent]
    return [{"Path": p, "Kind": k} for p, k in sorted(out.items())]


def _tar_tree(root: str, out_path: str) -> None:
    import tarfile

    with tarfile.open(out_path, "w", format=tarfile.PAX_FORMAT) as tf:
        for entry in sorted(os.listdir(root)):
            tf.add(os.path.join(root, entry), arcname=entry, recursive=True)
