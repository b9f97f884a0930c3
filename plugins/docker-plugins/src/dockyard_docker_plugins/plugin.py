"""The feature plugin's hooks: the driver source, the authorization middleware, the settings,
and the cluster view global-scope plugins share (``dockyard_provides``: one per kernel, handed to
this distribution's drivers through their context, as the cluster store is)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.specs import hookimpl
from dockyard.specs.api import ApiMiddleware
from dockyard.specs.config import ConfigOption
from dockyard.specs.provides import DriverSource, Provided
from dockyard_docker_plugins import authz
from dockyard_docker_plugins.client import CALL_TIMEOUT, RETRY_WINDOW, SOCKET_DIRS, SPEC_DIRS, Discovery
from dockyard_docker_plugins.source import DockerPlugins


@hookimpl
def dockyard_config_options() -> Iterable[ConfigOption]:
    return [
        ConfigOption("authorization-plugins", list, [],
                     "Docker authorization plugins every API request passes through, in order "
                     "(dockerd's --authorization-plugin)"),
        ConfigOption("docker-plugin-sockets", list, list(SOCKET_DIRS),
                     "directories searched for Docker plugin sockets NAME.sock and NAME/NAME.sock"),
        ConfigOption("docker-plugin-specs", list, list(SPEC_DIRS),
                     "directories searched for Docker plugin spec files NAME.spec and NAME.json"),
        ConfigOption("docker-plugin-retry", float, RETRY_WINDOW,
                     "seconds a Docker plugin that cannot be reached is retried (with back-off)"),
        ConfigOption("docker-plugin-timeout", float, CALL_TIMEOUT,
                     "seconds one call to a Docker plugin may take (Create and Mount: twice)"),
    ]


@hookimpl
def dockyard_configure(kernel: Any, config: Mapping[str, Any], reload: bool) -> None:
    """An authorization plugin that cannot be found stops the daemon at start, as dockerd's
    ``validateAuthzPlugins`` does."""
    names = config.get("authorization-plugins") or []
    if not names or reload:
        return
    discovery = Discovery(tuple(config.get("docker-plugin-sockets") or SOCKET_DIRS),
                          tuple(config.get("docker-plugin-specs") or SPEC_DIRS))
    for name in names:
        if discovery.find(str(name)) is None:
            raise InvalidArgument(f'authorization plugin "{name}" not found (no socket or spec file in '
                                  f"{discovery.where()})")


@hookimpl
def dockyard_driver_sources(kernel: Any) -> Iterable[DriverSource]:
    return [DockerPlugins(kernel.config).source()]


@hookimpl
def dockyard_api_middlewares(kernel: Any) -> Iterable[ApiMiddleware]:
    return authz.middlewares(kernel.config)


@hookimpl
def dockyard_provides(kernel: Any) -> Iterable[Provided]:
    if not kernel.configured_driver_name("cluster"):  # global-scope networks need the cluster store
        return []
    from dockyard_docker_plugins.cluster import ClusterView

    return [Provided(ClusterView, ClusterView(), "docker-plugins")]
