"""Filesystem routes: ``GET/HEAD/PUT /containers/{id}/archive`` (``docker cp``),
``GET /containers/{id}/export`` and ``POST /commit``.

The file work (resolving paths inside the rootfs or a mount's source, tarring, safe
extraction) is the containers service's (``archive_stat``/``archive_get``/``archive_put``); the
routes only move bytes and headers.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import tempfile

from aiohttp import web

from dockyard.errors import InvalidArgument
from dockyard.services.containers import PathStat
from dockyard.specs.api import ApiRoute
from dockyard_api_docker.http import json_response, kernel_of, qbool, send_tar, temp_path

STAT_HEADER = "X-Docker-Container-Path-Stat"


def _stat_header(st: PathStat) -> str:
    return base64.b64encode(json.dumps(st.to_docker()).encode()).decode()


async def head_archive(request: web.Request) -> web.Response:
    st = await kernel_of(request).containers.archive_stat(request.match_info["id"], request.query.get("path", ""))
    return web.Response(status=200, headers={STAT_HEADER: _stat_header(st)})


async def get_archive(request: web.Request) -> web.StreamResponse:
    svc = kernel_of(request).containers
    with temp_path("dockyard-cp-") as tmp:
        with open(tmp, "wb") as fh:
            st = await svc.archive_get(request.match_info["id"], request.query.get("path", ""), fh)
        return await send_tar(request, tmp, {STAT_HEADER: _stat_header(st)})


async def put_archive(request: web.Request) -> web.Response:
    path = request.query.get("path", "")
    if not path:
        raise InvalidArgument("path is required")
    fd, tmp = tempfile.mkstemp(prefix="dockyard-cp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            async for chunk in request.content.iter_chunked(1 << 16):
                await asyncio.to_thread(fh.write, chunk)
        await kernel_of(request).containers.archive_put(request.match_info["id"], path, tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return web.Response(status=200)


async def export_container(request: web.Request) -> web.StreamResponse:
    svc = kernel_of(request).containers
    with temp_path("dockyard-export-") as tmp:
        await svc.export(request.match_info["id"], tmp)
        return await send_tar(request, tmp)


async def container_changes(request: web.Request) -> web.Response:
    changes = await kernel_of(request).containers.changes(request.match_info["id"])
    return json_response(changes or None)


async def commit(request: web.Request) -> web.Response:
    from dockyard_api_docker.bodies import CONTAINER_CONFIG
    from dockyard_api_docker.http import read_json

    svc = kernel_of(request).containers
    body = await read_json(request, schema=CONTAINER_CONFIG, struct="Config")
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
