"""The ``builder`` plugin: the classic ``POST /build`` endpoint (and ``/build/prune``)."""

from __future__ import annotations

from typing import Any

from dockyard.specs import ApiRoute, hookimpl


@hookimpl
def dockyard_api_routes(kernel: Any) -> list[ApiRoute]:
    from dockyard_builder import api

    return api.routes()
