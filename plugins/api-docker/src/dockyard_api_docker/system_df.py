"""``GET /system/df`` (``docker system df [-v]``): images, containers and volumes with sizes."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dockyard.errors import DockyardError
from dockyard.model import Container
from dockyard.specs.api import ApiRoute
from dockyard_api_docker.http import json_response, kernel_of
from dockyard_api_docker.images import summary
from dockyard_api_docker.shapes import container_summary
from dockyard_api_docker.volumes import volume_json


async def system_df(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    images = kernel.images
    volumes = kernel.volumes
    data = images.df()
    image_rows = [summary(img, containers=n, shared=shared) for img, n, shared in data["images"]]
    containers: list[dict[str, Any]] = []
    drv = None
    try:
        drv = await images.driver()
    except DockyardError:
        pass
    by_id = {img.id: img for img, _, _ in data["images"]}
    for c in kernel.open_store().list(Container):
        row = container_summary(c, c.image_id)
        size_rw = 0
        if drv is not None:
            try:
                if await drv.exists(c.id):
                    size_rw = await drv.usage(c.id)
            except (DockyardError, OSError):
                size_rw = 0
        img = by_id.get(c.image_id)
        row["SizeRw"] = size_rw
        row["SizeRootFs"] = size_rw + (img.size if img else 0)
        containers.append(row)
    used: dict[str, int] = {}
    for c in kernel.open_store().list(Container):
        from dockyard.services.volumes import volume_references

        for name in volume_references(c):
            used[name] = used.get(name, 0) + 1
    vol_rows = []
    for vol in volumes.list():
        row = volume_json(vol)
        row["UsageData"] = {"RefCount": used.get(vol.name, 0), "Size": await volumes.usage(vol)}
        vol_rows.append(row)
    return json_response({"LayersSize": data["layers_size"], "Images": image_rows, "Containers": containers,
                          "Volumes": vol_rows, "BuildCache": None, "BuilderSize": 0})


def routes() -> list[ApiRoute]:
    return [ApiRoute("GET", "/system/df", system_df, name="system-df")]
