"""Feature hooks of dockyard-machine: the ``/dockyard/v1/machines`` API routes, and the engine
flags of a machine created with ``--swarm`` (its cluster store and own address)."""

from __future__ import annotations

from typing import Any

from dockyard.specs import ApiRoute, hookimpl


@hookimpl
def dockyard_api_routes(kernel: Any) -> list[ApiRoute]:
    from dockyard_machine import api

    return api.routes()


@hookimpl
def dockyard_engine_flags(kernel: Any, host: Any) -> list[str]:
    if not kernel.has_service("machines"):
        return []
    from dockyard_machine.service import MachineService

    svc = kernel.service("machines")
    return svc.swarm_flags(host) if isinstance(svc, MachineService) else []
