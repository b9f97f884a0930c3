"""Filesystem routes: ``GET/HEAD/PUT /containers/{id}/archive`` (``docker cp``),
``GET /containers/{id}/export`` and ``POST /commit``.

Paths are resolved with :func:`dockyard.tarsafe.secure_join` inside the container's rootfs, or
inside the source of the bind/volume mounted at that path; archives are extracted with
:func:`dockyard.tarsafe.extract`, so nothing lands outside the target.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import stat
import tempfile
from typing import Any

from aiohttp import web

from dockyard.errors import Forbidden, InvalidArgument, NotFound
from dockyard.services import container_fs as cfs
from dockyard.specs.api import ApiRoute
from dockyard.tarsafe import extract
from dockyard_api_docker.http import json_response, kernel_of, qbool, send_tar, temp_path

STAT_HEADER = "X-Docker-Container-Path-Stat"


def _root_for(svc: Any, c: Any, rootfs: str, path: str) -> tuple[str, str, bool]:
    """(root on the host, path inside it, read-only) for a container path."""
    norm = "/" + path.strip("/")
    for dest, source, ro in svc.volume_paths(c):
        d = dest.rstrip("/") or "/"
        if norm == d or norm.startswith(d + "/"):
            rest = norm[len(d):] or "/"
            return source, rest + ("/" if path.endswith("/") and rest != "/" else ""), ro
    return rootfs, path, False


def _stat_header(st: dict[str, Any]) -> str:
    return base64.b64encode(json.dumps(st).encode()).decode()


async def head_archive(request: web.Request) -> web.Response:
    svc = kernel_of(request).service("containers")
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("path is required")
    async with svc.rootfs(request.match_info["id"]) as (c, rootfs):
        root, inner, _ro = _root_for(svc, c, rootfs, path)
        _host, st = await asyncio.to_thread(cfs.path_stat, root, inner, request.match_info["id"])
    st["name"] = os.path.basename(path.rstrip("/")) or "/"
    return web.Response(status=200, headers={STAT_HEADER: _stat_header(st)})


async def get_archive(request: web.Request) -> web.StreamResponse:
    svc = kernel_of(request).service("containers")
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("path is required")
    async with svc.rootfs(request.match_info["id"]) as (c, rootfs):
        root, inner, _ro = _root_for(svc, c, rootfs, path)
        host, st = await asyncio.to_thread(cfs.path_stat, root, inner, request.match_info["id"])
        st["name"] = os.path.basename(path.rstrip("/")) or "/"
        if path.endswith("/.") or path.endswith("/"):
            host = cfs.resolve_in(root, inner)
        arcname = os.path.basename(path.rstrip("/").removesuffix("/.")) or "."
        if path.endswith("/."):
            arcname = os.path.basename(path[:-2].rstrip("/")) or "."
        with temp_path("dockyard-cp-") as tmp:
            def write() -> None:
                with open(tmp, "wb") as fh:
                    cfs.write_tar(host, arcname, fh)

            await asyncio.to_thread(write)
            return await send_tar(request, tmp, {STAT_HEADER: _stat_header(st)})


async def put_archive(request: web.Request) -> web.Response:
    svc = kernel_of(request).service("containers")
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("path is required")
    fd, tmp = tempfile.mkstemp(prefix="dockyard-cp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.content.iter_chunked(1 << 16):
                await asyncio.to_thread(fh.write, chunk)
        async with svc.rootfs(request.match_info["id"]) as (c, rootfs):
            root, inner, ro = _root_for(svc, c, rootfs, path)
            if ro or c.host_config.read_only_rootfs and root == rootfs:
                raise Forbidden("container rootfs is marked read-only" if root == rootfs
                                else f"mounted volume is marked read-only: {path}")
            target = cfs.resolve_in(root, inner)
            if not target.exists():
                raise NotFound(f"Could not find the file {path} in container {request.match_info['id']}")
            if not stat.S_ISDIR(target.stat().st_mode):
                raise InvalidArgument("extraction point is not a directory")
            await asyncio.to_thread(extract, tmp, str(target))
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return web.Response(status=200)


async def export_container(request: web.Request) -> web.StreamResponse:
    svc = kernel_of(request).service("containers")
    with temp_path("dockyard-export-") as tmp:
        await svc.export(request.match_info["id"], tmp)
        return await send_tar(request, tmp)


async def container_changes(request: web.Request) -> web.Response:
    changes = await kernel_of(request).service("containers").changes(request.match_info["id"])
    return json_response(changes or None)


async def commit(request: web.Request) -> web.Response:
    from dockyard_api_docker.http import read_json

    svc = kernel_of(request).service("containers")
    body = await read_json(request)
    q = request.query
    repo, tag = q.get("repo", ""), q.get("tag", "")
    changes = q.getall("changes", [])
    changes = [line for ch in changes for line in ch.splitlines() if line.strip()]
    image_id = await svc.commit(q.get("container", ""), repo=repo, tag=tag, comment=q.get("comment", ""),
                                author=q.get("author", ""), changes=changes, pause=qbool(request, "pause", True),
                                config=body or None)
    return json_response({"Id": image_id}, status=201)


def routes() -> list[ApiRoute]:
    return [ApiRoute("HEAD", "/containers/{id}/archive", head_archive, name="containers-archive-head"),
            ApiRoute("GET", "/containers/{id}/archive", get_archive, name="containers-archive-get"),
            ApiRoute("PUT", "/containers/{id}/archive", put_archive, name="containers-archive-put"),
            ApiRoute("GET", "/containers/{id}/export", export_container, name="containers-export"),
            ApiRoute("GET", "/containers/{id}/changes", container_changes, name="containers-changes"),
            ApiRoute("POST", "/commit", commit, name="commit")]
