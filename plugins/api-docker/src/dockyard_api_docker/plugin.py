"""The ``api-docker`` plugin: registers the Docker Engine API routes and middlewares."""

from __future__ import annotations

from typing import Any

from dockyard.specs import ApiFront, ApiMiddleware, ApiRoute, hookimpl
from dockyard_api_docker import (
    archive,
    attach,
    containers,
    exec,
    images,
    networks,
    system,
    system_df,
    volumes,
)
from dockyard_api_docker.middleware import docker_errors, docker_version


def _unique(route_lists: list[list[ApiRoute]]) -> list[ApiRoute]:
    """The first module claiming a method and path keeps it (``/commit`` may also be served by
    an images module of this front); duplicates across plugins still conflict loudly."""
    seen: set[tuple[str, str]] = set()
    out = []
    for routes in route_lists:
        for r in routes:
            key = (r.method.upper(), r.path)
            if key not in seen:
                seen.add(key)
                out.append(r)
    return out


@hookimpl
def dockyard_api_routes(kernel: Any) -> list[ApiRoute]:
    return _unique([system.routes(), containers.routes(), attach.routes(), exec.routes(), networks.routes(),
                    images.routes(), volumes.routes(), system_df.routes(), archive.routes()])


@hookimpl
def dockyard_api_fronts(kernel: Any) -> list[ApiFront]:
    return [ApiFront("api-docker", "docker", "Docker Engine API 1.24-1.41")]


@hookimpl
def dockyard_api_middlewares(kernel: Any) -> list[ApiMiddleware]:
    return [ApiMiddleware("docker-errors", docker_errors, order=10),
            ApiMiddleware("docker-version", docker_version, order=20)]
