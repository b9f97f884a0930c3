"""Volume routes of the Docker API front (``shared/reference/docker-engine-api.md`` §11)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.errors import InvalidArgument
from dockyard.kernel import Kernel
from dockyard.model import Volume
from dockyard.specs.api import ApiRoute
from dockyard_api_docker.bodies import VOLUME_CREATE
from dockyard_api_docker.filters import Filters
from dockyard_api_docker.http import json_response, kernel_of, no_content, qbool, read_json

LIST_FILTERS = {"dangling", "driver", "label", "name"}
PRUNE_FILTERS = {"label", "label!", "all"}


def _svc(kernel: Kernel) -> Any:
    return kernel.volumes


def created_at(iso: str) -> str:
    """dockerd's ``CreatedAt``: RFC 3339 to the second (``2026-11-24T04:52:13Z``)."""
    if not iso:
        return ""
    head = iso.split(".")[0].replace("+00:00", "")
    return head if head.endswith("Z") else head + "Z"


def volume_json(vol: Volume) -> dict[str, Any]:
    return {"CreatedAt": created_at(vol.created), "Driver": vol.driver, "Labels": dict(vol.labels),
            "Mountpoint": vol.mountpoint, "Name": vol.name, "Options": dict(vol.options) or None,
            "Scope": vol.scope}


def _str_map(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what}: expected an object")
    return {str(k): str(v) for k, v in value.items()}


async def list_volumes(request: web.Request) -> web.Response:
    svc = _svc(kernel_of(request))
    flt = Filters.parse(request.query.get("filters"), LIST_FILTERS)
    used = svc.in_use() if "dangling" in flt else set()
    out = []
    for vol in sorted(svc.list(), key=lambda v: v.name):
        if not flt.match_bool("dangling", vol.name not in used):
            continue
        if not flt.match_any("driver", vol.driver):
            continue
        if "name" in flt and not any(w in vol.name for w in flt.get("name")):
            continue
        if not flt.match_labels(vol.labels):
            continue
        out.append(volume_json(vol))
    return json_response({"Volumes": out, "Warnings": None})


async def create_volume(request: web.Request) -> web.Response:
    svc = _svc(kernel_of(request))
    body = await read_json(request, schema=VOLUME_CREATE, struct="CreateOptions")
    vol = await svc.create(str(body.get("Name") or ""), str(body.get("Driver") or "local"),
                           _str_map(body.get("DriverOpts"), "DriverOpts"), _str_map(body.get("Labels"), "Labels"))
    return json_response(volume_json(vol), status=201)


async def inspect_volume(request: web.Request) -> web.Response:
    return json_response(volume_json(_svc(kernel_of(request)).get(request.match_info["name"])))


async def remove_volume(request: web.Request) -> web.Response:
    await _svc(kernel_of(request)).remove(request.match_info["name"], force=qbool(request, "force"))
    return no_content()


async def prune_volumes(request: web.Request) -> web.Response:
    svc = _svc(kernel_of(request))
    flt = Filters.parse(request.query.get("filters"), PRUNE_FILTERS)
    negated = flt.get("label!")

    def match(vol: Volume) -> bool:
        if not flt.match_labels(vol.labels):
            return False
        for expr in negated:
            k, sep, v = expr.partition("=")
            if k in vol.labels and (not sep or vol.labels[k] == v):
                return False
        return True

    deleted, reclaimed = await svc.prune(match)
    return json_response({"VolumesDeleted": deleted or None, "SpaceReclaimed": reclaimed})


def routes() -> list[ApiRoute]:
    return [
        # a name may hold a "/": a swarm manager's NODE/NAME (Swarm classic's volume names)
        ApiRoute("GET", "/volumes", list_volumes, name="volumes-list"),
        ApiRoute("POST", "/volumes/create", create_volume, name="volumes-create"),
        ApiRoute("POST", "/volumes/prune", prune_volumes, name="volumes-prune"),
        ApiRoute("GET", "/volumes/{name:.+}", inspect_volume, name="volumes-inspect"),
        ApiRoute("DELETE", "/volumes/{name:.+}", remove_volume, name="volumes-remove"),
    ]
