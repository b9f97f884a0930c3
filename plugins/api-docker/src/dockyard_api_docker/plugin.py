"""The ``api-docker`` plugin: registers the Docker Engine API routes and middlewares."""

from __future__ import annotations

from typing import Any

from dockyard.specs import ApiMiddleware, ApiRoute, hookimpl

from dockyard_api_docker import containers, images, networks, system, system_df, volumes
from dockyard_api_docker.middleware import docker_errors, docker_version


@hookimpl
def dockyard_api_routes(kernel: Any) -> list[ApiRoute]:
    return [*system.routes(), *containers.routes(), *networks.routes(), *images.routes(), *volumes.routes(),
            *system_df.routes()]


@hookimpl
def dockyard_api_middlewares(kernel: Any) -> list[ApiMiddleware]:
    return [ApiMiddleware("docker-errors", docker_errors, order=10),
            ApiMiddleware("docker-version", docker_version, order=20)]
