"""Docker's checkpoint API (experimental in dockerd, served only when ``experimental`` is on)
and dockyard's portable-archive extension.

- ``POST /containers/{id}/checkpoints`` ``{"CheckpointID", "CheckpointDir", "Exit"}`` -> 201;
  ``GET /containers/{id}/checkpoints?dir=`` -> ``[{"Name"}]``;
  ``DELETE /containers/{id}/checkpoints/{checkpoint}?dir=`` -> 204; ``docker start
  --checkpoint`` is ``POST /containers/{id}/start?checkpoint=NAME&checkpoint-dir=DIR``
  (containers.py hands it to :func:`start_from_checkpoint`).
- ``POST /dockyard/v1/containers/{id}/checkpoint/export`` -> the archive (podman's and the
  kubelet's layout, ``application/x-tar``, gzip-compressed);
  ``POST /dockyard/v1/containers/restore?name=`` with an archive as the body -> 201 ``{"Id"}``
  (podman's ``/libpod/containers/{id}/checkpoint?export=1`` and ``.../restore?import=1``).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from aiohttp import web

from dockyard.errors import InvalidArgument, NotFound
from dockyard.services.containers import CheckpointCreate, CheckpointImport
from dockyard.specs.api import ApiRoute
from dockyard_api_docker.http import (
    json_response,
    kernel_of,
    no_content,
    qbool,
    read_json,
    send_tar,
    temp_path,
)

EXPERIMENTAL_ONLY = "checkpoint and restore are experimental: start the daemon with --experimental"


def experimental(kernel: Any) -> bool:
    return bool(kernel.config.get("experimental"))


def _require(request: web.Request) -> Any:
    kernel = kernel_of(request)
    if not experimental(kernel):
        # dockerd answers 404 "page not found" for routes it does not serve; say why instead
        raise NotFound(EXPERIMENTAL_ONLY)
    return kernel.containers


async def create_checkpoint(request: web.Request) -> web.Response:
    svc = _require(request)
    body = await read_json(request) or {}
    if not isinstance(body, dict):
        raise InvalidArgument("checkpoint options must be a JSON object")
    name = str(body.get("CheckpointID") or "")
    if not name:
        raise InvalidArgument("a checkpoint ID (CheckpointID) is required")
    exit_ = body.get("Exit")
    req = CheckpointCreate(name=name, directory=str(body.get("CheckpointDir") or ""),
                           leave_running=exit_ is False)
    await svc.checkpoint(request.match_info["id"], req)
    return web.Response(status=201)


async def list_checkpoints(request: web.Request) -> web.Response:
    svc = _require(request)
    found = svc.checkpoints(request.match_info["id"], request.query.get("dir", ""))
    return json_response([{"Name": cp.name} for cp in found])


async def delete_checkpoint(request: web.Request) -> web.Response:
    svc = _require(request)
    await svc.checkpoint_remove(request.match_info["id"], request.match_info["checkpoint"],
                                request.query.get("dir", ""))
    return no_content()


async def start_from_checkpoint(request: web.Request, ref: str, name: str) -> None:
    """``docker start --checkpoint NAME [--checkpoint-dir DIR]``."""
    svc = _require(request)
    await svc.restore(ref, name, request.query.get("checkpoint-dir", ""))


async def export_checkpoint(request: web.Request) -> web.StreamResponse:
    """``dockyard container checkpoint --export``: the archive, streamed once written."""
    kernel = kernel_of(request)
    req = CheckpointCreate(name="checkpoint", leave_running=qbool(request, "leaveRunning"),
                           tcp_established=qbool(request, "tcpEstablished", True))
    with temp_path("dockyard-checkpoint-") as tmp:
        await kernel.containers.checkpoint_export(request.match_info["id"], tmp, req)
        return await send_tar(request, tmp)


async def import_checkpoint(request: web.Request) -> web.Response:
    """``dockyard container restore --import``: the body is the archive."""
    kernel = kernel_of(request)
    with temp_path("dockyard-restore-") as tmp:
        with open(tmp, "wb") as fh:
            while chunk := await request.content.read(1 << 16):
                await asyncio.to_thread(fh.write, chunk)
        if os.path.getsize(tmp) == 0:
            raise InvalidArgument("the request body must be a checkpoint archive")
        c = await kernel.containers.checkpoint_import(CheckpointImport(
            archive_path=tmp, name=request.query.get("name", ""),
            ignore_static_ip=qbool(request, "ignoreStaticIP"), ignore_static_mac=qbool(request, "ignoreStaticMAC"),
            ignore_volumes=qbool(request, "ignoreVolumes")))
    return json_response({"Id": c.id, "Name": c.name}, status=201)


def routes() -> list[ApiRoute]:
    return [
        ApiRoute("POST", "/containers/{id}/checkpoints", create_checkpoint, name="checkpoints-create"),
        ApiRoute("GET", "/containers/{id}/checkpoints", list_checkpoints, name="checkpoints-list"),
        ApiRoute("DELETE", "/containers/{id}/checkpoints/{checkpoint}", delete_checkpoint,
                 name="checkpoints-delete"),
        ApiRoute("POST", "/dockyard/v1/containers/{id}/checkpoint/export", export_checkpoint,
                 name="dockyard-checkpoints-export"),
        ApiRoute("POST", "/dockyard/v1/containers/restore", import_checkpoint, name="dockyard-checkpoints-restore"),
    ]
