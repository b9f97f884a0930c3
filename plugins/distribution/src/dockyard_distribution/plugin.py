"""The ``distribution`` plugin: registry routes, settings, and the image-puller hook.

``POST /images/create`` serves both ``fromImage`` (pull) and ``fromSrc`` (import). When
another plugin (the API front) routes it itself, we leave it to that plugin and offer our pull
handler through the ``dockyard_image_puller`` hook (optional until the core declares it; see
README "Wiring").
"""

from __future__ import annotations

import re
from typing import Any

from dockyard.specs import ApiMiddleware, ApiRoute, ConfigOption, hookimpl

CREATE = ("POST", "/images/create")
_CREATE_PATH = re.compile(r"^(?:/v[0-9]+\.[0-9]+)?/images/create/?$")


def _routed_elsewhere(kernel: Any) -> bool:
    for impl in kernel.hook.dockyard_api_routes.get_hookimpls():
        if impl.function is dockyard_api_routes:
            continue
        for route in impl.function(kernel=kernel) or ():
            if (route.method.upper(), route.path) == CREATE:
                return True
    return False


@hookimpl
def dockyard_api_routes(kernel: Any) -> list[ApiRoute]:
    from dockyard_distribution import api

    return api.routes(include_create=not _routed_elsewhere(kernel))


def _front_delegates(kernel: Any) -> bool:
    """Whether the core declares ``dockyard_image_puller``: then the front that routes
    ``/images/create`` asks that hook for our handler and the middleware below stands aside."""
    caller = getattr(kernel.hook, "dockyard_image_puller", None)
    return caller is not None and caller.has_spec()


@hookimpl
def dockyard_api_middlewares(kernel: Any) -> list[ApiMiddleware]:
    """Until the front delegates ``fromImage`` through ``dockyard_image_puller``, answer
    ``POST /images/create?fromImage=`` here, inside the front's error and version middlewares
    (order 10 and 20), when another plugin owns the route."""
    if _front_delegates(kernel) or not _routed_elsewhere(kernel):
        return []
    from aiohttp import web

    from dockyard_distribution import api

    @web.middleware
    async def pull_middleware(request: web.Request, handler: Any) -> Any:
        if request.method == "POST" and request.query.get("fromImage") and _CREATE_PATH.match(request.path):
            return await api.pull_image(request)
        return await handler(request)

    return [ApiMiddleware("distribution-pull", pull_middleware, order=50)]


@hookimpl
def dockyard_config_options() -> list[ConfigOption]:
    return [
        ConfigOption("insecure-registries", list, [],
                     "registries (host[:port] or CIDR) reachable over plain HTTP or unverified TLS; "
                     "127.0.0.0/8 always is", reloadable=True),
        ConfigOption("max-concurrent-downloads", int, 3, "layers downloaded at once per pull", reloadable=True),
        ConfigOption("max-concurrent-uploads", int, 5, "layers uploaded at once per push", reloadable=True),
    ]


@hookimpl(optionalhook=True)
def dockyard_image_puller(kernel: Any) -> Any:
    """The aiohttp handler for ``POST /images/create?fromImage=`` (proposed firstresult hook)."""
    from dockyard_distribution import api

    return api.pull_image
