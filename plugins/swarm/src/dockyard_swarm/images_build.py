"""``docker build`` on a swarm manager: the build runs on one node, chosen like a container.

A ``dockyard.plugins`` hook module: on a kernel whose role is ``manager`` (and only there) an
API middleware takes ``POST /build`` before any route does and hands it, body and all, to the
engine of the node the scheduler picks. As Swarm classic, placement expressions ride on the build
arguments (``--build-arg constraint:node==h2`` arrives as the argument ``constraint:node`` with
the value ``=h2``; ``affinity:image==busybox`` likewise); they are removed from what the node
sees. The strategy and filters are the manager's (``strategy``, ``filters`` keys); memory and CPU
shares of the build count as the request's size. The node's answer (its build stream) is relayed
as it comes, and the node's images are seen again once it ends.
"""

from __future__ import annotations

import json
import re
from typing import Any

from dockyard.specs import hookimpl
from dockyard.specs.api import ApiMiddleware

MANAGER = "manager"
BUILD = re.compile(r"^(/v[0-9.]+)?/build$")
PLACEMENT = ("constraint:", "affinity:")


@hookimpl
def dockyard_api_middlewares(kernel: Any) -> list[ApiMiddleware]:
    if kernel.role != MANAGER:
        return []
    return [ApiMiddleware("swarm-build", middleware(kernel), order=50)]


def placement_args(buildargs: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """(Swarm's ``constraint:``/``affinity:`` expressions, the other build arguments)."""
    # the CLI splits KEY=VALUE at the first "=": constraint:node==h2 is ("constraint:node", "=h2"),
    # constraint:node!=h2 is ("constraint:node!", "h2")
    expressions = [f"{k}={v}" for k, v in buildargs.items() if k.startswith(PLACEMENT)]
    rest = {k: v for k, v in buildargs.items() if not k.startswith(PLACEMENT)}
    return expressions, rest


async def choose_node(kernel: Any, expressions: list[str], query: Any) -> Any:
    """The node a build asking for ``expressions`` runs on (the manager's strategy and filters)."""
    from dockyard.errors import NotFound
    from dockyard.scheduler import place, request_from_create
    from dockyard_swarm.events import nodes_service

    nodes = [n for n in await nodes_service(kernel).nodes() if n.healthy]
    if not nodes:
        raise NotFound("no healthy node in the cluster to build on")
    host_config: dict[str, Any] = {}
    if query.get("memory"):
        host_config["Memory"] = int(query["memory"])
    if query.get("cpushares"):
        host_config["CpuShares"] = int(query["cpushares"])
    request, _body = request_from_create({"Image": "", "Env": expressions, "HostConfig": host_config}, "build")
    values = kernel.config.values
    wanted = values.get("filters")
    chosen = place(kernel, request, nodes, str(values.get("strategy") or "spread"),
                   [str(f) for f in wanted] if wanted else None, limit=1)
    return chosen[0]


def middleware(kernel: Any) -> Any:
    from aiohttp import web

    @web.middleware
    async def build_on_a_node(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method != "POST" or not BUILD.match(request.path):
            return await handler(request)
        from dockyard_swarm.events import engine

        query = dict(request.query)
        try:
            buildargs = json.loads(query.get("buildargs") or "{}")
        except ValueError:
            buildargs = {}
        expressions, rest = placement_args(buildargs if isinstance(buildargs, dict) else {})
        if expressions:
            query["buildargs"] = json.dumps(rest)
        node = await choose_node(kernel, expressions, query)
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "x-registry-config")}

        async def body() -> Any:
            async for chunk in request.content.iter_chunked(1 << 16):
                yield chunk

        async with engine(kernel, node).stream("POST", "/build", query, data=body(), headers=headers) as upstream:
            resp = web.StreamResponse(status=upstream.status)
            for name in ("Content-Type", "Api-Version"):
                if name in upstream.headers:
                    resp.headers[name] = upstream.headers[name]
            resp.enable_chunked_encoding()
            await resp.prepare(request)
            async for chunk in upstream.content.iter_any():
                await resp.write(chunk)
            await resp.write_eof()
        if kernel.has_service("images"):
            await kernel.service("images").pulled(node.name)
        return resp

    return build_on_a_node


__all__ = ["choose_node", "dockyard_api_middlewares", "middleware", "placement_args"]
