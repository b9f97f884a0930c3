"""The ``distribution`` plugin: registry routes, settings, and the image-puller hook.

The API front owns ``POST /images/create`` and hands ``fromImage`` to the puller this plugin
offers through ``dockyard_image_puller``; the builder pulls base images through the same
descriptor's ``pull``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dockyard.specs import ApiRoute, ConfigOption, hookimpl
from dockyard.specs import Provided
from dockyard.specs.storage import ImagePuller, RegistrySessions


@hookimpl
def dockyard_api_routes(kernel: Any) -> list[ApiRoute]:
    from dockyard_distribution import api, manifests

    return api.routes() + manifests.routes()


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
    from dockyard_distribution.mirrors import validate_mirrors

    validate_mirrors(config.get("registry-mirrors"))


@hookimpl
def dockyard_image_puller(kernel: Any) -> ImagePuller:
    from dockyard_distribution import api

    return ImagePuller("distribution", pull=api.pull, handler=api.pull_image)


@hookimpl
def dockyard_provides(kernel: Any) -> list[Provided]:
    """Registry sessions for other plugins (provenance's signatures), through core's interface."""
    from dockyard_distribution.sessions import ClientSessions

    return [Provided(RegistrySessions, ClientSessions(kernel), "distribution")]
