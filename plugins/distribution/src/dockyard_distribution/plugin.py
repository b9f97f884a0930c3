"""The ``distribution`` plugin: registry routes, settings, and the image-puller hook.

The API front owns ``POST /images/create`` and hands ``fromImage`` to the puller this plugin
offers through ``dockyard_image_puller``; the builder pulls base images through the same
descriptor's ``pull``.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

from dockyard.specs import ApiRoute, ConfigOption, Provided, hookimpl
from dockyard.specs.storage import ImagePuller, RegistrySessions

if TYPE_CHECKING:
    from dockyard.specs.storage import RegistrySession


def _lazy(module: str, name: str) -> Callable[..., Awaitable[Any]]:
    """``dockyard_distribution.<module>.<name>``, imported at its first call: the registry
    client, its transfers and routes are ~0.6 MiB of RSS a daemon that never pulls or pushes
    does not need (#21 item 10)."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        return await getattr(importlib.import_module(f"dockyard_distribution.{module}"), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = name
    return call


#: (method, path, module, handler, route name): api.py's and manifests.py's handlers
ROUTES = (
    ("POST", "/images/{name:.+}/push", "api", "push_image", "distribution-push"),
    ("GET", "/distribution/{name:.+}/json", "api", "distribution_inspect", "distribution-inspect"),
    ("POST", "/auth", "api", "login", "distribution-auth"),
    ("POST", "/dockyard/v1/manifests", "manifests", "create_route", "dockyard-manifests-create"),
    ("POST", "/dockyard/v1/manifests/{name:.+}/add", "manifests", "add_route", "dockyard-manifests-add"),
    ("POST", "/dockyard/v1/manifests/{name:.+}/push", "manifests", "push_route", "dockyard-manifests-push"),
    ("GET", "/dockyard/v1/manifests/{name:.+}/json", "manifests", "inspect_route", "dockyard-manifests-inspect"),
    ("DELETE", "/dockyard/v1/manifests/{name:.+}", "manifests", "remove_route", "dockyard-manifests-remove"),
)


@hookimpl
def dockyard_api_routes(kernel: Any) -> list[ApiRoute]:
    return [ApiRoute(method, path, _lazy(module, handler), name=name) for method, path, module, handler, name in ROUTES]


@hookimpl
def dockyard_config_options() -> list[ConfigOption]:
    return [
        ConfigOption("insecure-registries", list, [],
                     "registries (host[:port] or CIDR) reachable over plain HTTP or unverified TLS; "
                     "127.0.0.0/8 always is", reloadable=True),
        ConfigOption("registry-mirrors", list, [],
                     "Docker Hub mirrors (http(s) URLs, a path kept as prefix) tried in order before "
                     "registry-1.docker.io for docker.io pulls; plain http only on loopback or for "
                     "insecure-registries", reloadable=True),
        ConfigOption("max-concurrent-downloads", int, 3, "layers downloaded at once per pull", reloadable=True),
        ConfigOption("max-concurrent-uploads", int, 5, "layers uploaded at once per push", reloadable=True),
    ]


@hookimpl
def dockyard_configure(kernel: Any, config: Mapping[str, Any], reload: bool) -> None:
    """Reject an invalid mirror at load (dockerd's ``invalid mirror: ...``)."""
    mirrors = config.get("registry-mirrors")
    if mirrors is None or mirrors == []:  # nothing to check: the registry client stays unimported
        return
    from dockyard_distribution.mirrors import validate_mirrors

    validate_mirrors(mirrors)


@hookimpl
def dockyard_image_puller(kernel: Any) -> ImagePuller:
    return ImagePuller("distribution", pull=_lazy("api", "pull"), handler=_lazy("api", "pull_image"))


class LazySessions(RegistrySessions):
    """:class:`~dockyard_distribution.sessions.ClientSessions`, made at the first ``open``."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self._sessions: RegistrySessions | None = None

    def open(self, host: str, auth: dict[str, Any] | None = None) -> RegistrySession:
        if self._sessions is None:
            from dockyard_distribution.sessions import ClientSessions

            self._sessions = ClientSessions(self.kernel)
        return self._sessions.open(host, auth)


@hookimpl
def dockyard_provides(kernel: Any) -> list[Provided]:
    """Registry sessions for other plugins (provenance's signatures), through core's interface."""
    return [Provided(RegistrySessions, LazySessions(kernel), "distribution")]
