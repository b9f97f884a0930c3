"""Container routes of the Docker API front."""

from __future__ import annotations

from aiohttp import web
from dockyard.errors import InvalidArgument
from dockyard.model import Container, ContainerStatus
from dockyard.specs.api import ApiRoute

from dockyard_api_docker.filters import Filters
from dockyard_api_docker.http import json_response, kernel_of, qbool, qint
from dockyard_api_docker.shapes import container_summary

LIST_FILTERS = {"id", "name", "label", "status", "ancestor", "exited", "network", "volume",
                "before", "since", "health", "is-task", "publish", "expose"}
STATUSES = {s.value for s in ContainerStatus}


def _matches(c: Container, flt: Filters) -> bool:
    for st in flt.get("status"):
        if st not in STATUSES:
            raise InvalidArgument(f"invalid filter 'status={st}'")
    if not flt.match_any("status", c.state.status.value):
        return False
    if "id" in flt and not any(c.id.startswith(w) for w in flt.get("id")):
        return False
    if "name" in flt and not any(w.lstrip("/") in c.name for w in flt.get("name")):
        return False
    if not flt.match_labels(c.config.labels):
        return False
    if "exited" in flt:
        if c.state.status is not ContainerStatus.EXITED or str(c.state.exit_code) not in flt.get("exited"):
            return False
    if "ancestor" in flt and not (c.config.image in flt.get("ancestor") or c.image_id in flt.get("ancestor")
                                  or any(c.image_id.startswith("sha256:" + w) for w in flt.get("ancestor"))):
        return False
    if "network" in flt and not (set(flt.get("network")) & (set(c.networks) | {
            ep.network_id for ep in c.networks.values()})):
        return False
    if "volume" in flt and not any(m.name in flt.get("volume") or m.destination in flt.get("volume")
                                   for m in c.mounts):
        return False
    if "health" in flt:
        health = c.state.health.status if c.state.health else "none"
        if health not in flt.get("health"):
            return False
    return True


async def list_containers(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    flt = Filters.parse(request.query.get("filters"), LIST_FILTERS)
    show_all = qbool(request, "all") or bool(flt.get("status")) or "exited" in flt
    limit = qint(request, "limit", -1) or -1
    if limit > 0:
        show_all = True
    containers = sorted(kernel.open_store().list(Container), key=lambda c: c.created, reverse=True)
    out = []
    for c in containers:
        if not show_all and c.state.status not in (ContainerStatus.RUNNING, ContainerStatus.PAUSED,
                                                    ContainerStatus.RESTARTING):
            continue
        if not _matches(c, flt):
            continue
        out.append(container_summary(c, c.image_id))
        if 0 < limit <= len(out):
            break
    return json_response(out)


def routes() -> list[ApiRoute]:
    return [ApiRoute("GET", "/containers/json", list_containers, name="containers-list")]

