"""The ``api-docker`` plugin: registers the Docker Engine API routes and middlewares."""

from __future__ import annotations

from typing import Any

from dockyard.specs import ApiFront, ApiMiddleware, ApiRoute, hookimpl
from dockyard_api_docker import (
    archive,
    attach,
    checkpoints,
    containers,
    exec,
    images,
    networks,
    swarmmode,
    system,
    system_df,
    volumes,
)
from dockyard_api_docker.middleware import docker_errors, docker_version

#: The front's route modules; a method and path claimed twice fails start-up (collect_routes).
ROUTE_MODULES = (system, containers, attach, exec, networks, images, volumes, system_df, archive, swarmmode,
                 checkpoints)


@hookimpl
def dockyard_api_routes(kernel: Any) -> list[ApiRoute]:
    return [route for module in ROUTE_MODULES for route in module.routes()]


@hookimpl
def dockyard_api_fronts(kernel: Any) -> list[ApiFront]:
    return [ApiFront("api-docker", "docker", "Docker Engine API 1.24-1.41")]


@hookimpl
def dockyard_api_middlewares(kernel: Any) -> list[ApiMiddleware]:
    return [ApiMiddleware("docker-errors", docker_errors, order=10),
            ApiMiddleware("docker-version", docker_version, order=20)]
