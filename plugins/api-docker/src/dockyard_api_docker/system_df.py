"""``GET /system/df`` (``docker system df [-v]``): images, containers and volumes with sizes,
as the ``system`` service counts them."""

from __future__ import annotations

from aiohttp import web

from dockyard.specs.api import ApiRoute
from dockyard_api_docker.http import json_response, kernel_of
from dockyard_api_docker.images import summary
from dockyard_api_docker.shapes import container_summary
from dockyard_api_docker.volumes import volume_json


async def system_df(request: web.Request) -> web.Response:
    usage = await kernel_of(request).system.df()
    images = [summary(u.image, containers=u.containers, shared=u.shared_size) for u in usage.images]
    containers = []
    for u in usage.containers:
        row = container_summary(u.container, u.container.image_id)
        row["SizeRw"] = u.size_rw
        row["SizeRootFs"] = u.size_root_fs
        containers.append(row)
    volumes = []
    for u in usage.volumes:
        row = volume_json(u.volume)
        row["UsageData"] = {"RefCount": u.ref_count, "Size": u.size}
        volumes.append(row)
    return json_response({"LayersSize": usage.layers_size, "Images": images, "Containers": containers,
                          "Volumes": volumes, "BuildCache": None, "BuilderSize": 0})


def routes() -> list[ApiRoute]:
    return [ApiRoute("GET", "/system/df", system_df, name="system-df")]
