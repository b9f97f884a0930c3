"""Feature hooks of dockyard-machine: the ``/dockyard/v1/machines`` API routes."""

from __future__ import annotations

from typing import Any

from dockyard.specs import ApiRoute, hookimpl


@hookimpl
def dockyard_api_routes(kernel: Any) -> list[ApiRoute]:
    from dockyard_machine import api

    return api.routes()
