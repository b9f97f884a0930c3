"""The ``builder`` plugin: the classic ``POST /build`` endpoint (and ``/build/prune``), and a
start-up sweep of what interrupted builds left behind."""

from __future__ import annotations

from typing import Any

from dockyard.specs import ApiRoute, hookimpl
from dockyard.specs.events import BackgroundService


@hookimpl
def dockyard_api_routes(kernel: Any) -> list[ApiRoute]:
    from dockyard_builder import api

    return api.routes()


@hookimpl
def dockyard_background_services(kernel: Any) -> list[BackgroundService]:
    from dockyard_builder.sweep import sweep

    return [BackgroundService("builder-sweep", sweep)]
