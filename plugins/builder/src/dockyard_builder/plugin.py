"""The ``builder`` plugin: the classic ``POST /build`` endpoint (and ``/build/prune``), and a
start-up sweep of what interrupted builds left behind.

The routes' handlers import :mod:`dockyard_builder.api` (the builder, its Dockerfile parser,
cache and context: ~0.7 MiB of every daemon's RSS) at the first build, not at start: most
daemons never build (#21 item 10)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dockyard.specs import ApiRoute, hookimpl
from dockyard.specs.events import BackgroundService

if TYPE_CHECKING:
    from aiohttp import web


async def build(request: web.Request) -> web.StreamResponse:
    from dockyard_builder import api

    return await api.build(request)


async def prune_cache(request: web.Request) -> web.Response:
    from dockyard_builder import api

    return await api.prune_cache(request)


@hookimpl
def dockyard_api_routes(kernel: Any) -> list[ApiRoute]:
    return [ApiRoute("POST", "/build", build, name="build"),
            ApiRoute("POST", "/build/prune", prune_cache, name="build-prune")]


@hookimpl
def dockyard_background_services(kernel: Any) -> list[BackgroundService]:
    from dockyard_builder.sweep import sweep

    return [BackgroundService("builder-sweep", sweep)]
