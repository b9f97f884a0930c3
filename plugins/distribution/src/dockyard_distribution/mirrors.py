"""Docker Hub mirrors (dockerd's ``registry-mirrors``): validation and the pull endpoints.

As dockerd: mirrors serve only ``docker.io`` pulls, are tried in order and then Docker Hub
itself; a mirror that cannot be reached, does not have the manifest (404) or answers 5xx is
skipped. A mirror URL's path is kept as a prefix (``https://m.example/hub/`` ->
``https://m.example/hub/v2/...``). Plain ``http://`` mirrors are used only on loopback or when
listed in ``insecure-registries``. Pushes never go to mirrors. Docker Hub credentials are not
sent to mirrors (a mirror is another host).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dockyard.errors import Forbidden, InvalidArgument, NotFound, Unavailable
from dockyard.reference import Reference, validate_mirror
from dockyard_distribution.auth import AuthConfig
from dockyard_distribution.client import RegistryClient, RegistryError, RegistryOptions

log = logging.getLogger(__name__)
T = TypeVar("T")


def validate_mirrors(values: Any) -> list[str]:
    if values is None:
        return []
    if not isinstance(values, list):
        raise InvalidArgument("registry-mirrors must be a list of URLs")
    return [validate_mirror(v) for v in values]


def mirror_client(url: str, options: RegistryOptions) -> RegistryClient:
    """A client for one mirror: its scheme, host and path prefix as given (no probing of HTTPS
    then HTTP, as for a registry named by host)."""
    uri = urlsplit(validate_mirror(url))
    return RegistryClient(uri.netloc, options, None, base_url=f"{uri.scheme}://{uri.netloc}{uri.path.rstrip('/')}")


def pull_clients(ref: Reference, options: RegistryOptions, auth: AuthConfig | None) -> list[RegistryClient]:
    """The clients a pull of ``ref`` tries in order: the mirrors (docker.io only), then the
    registry itself (``options.hub_host`` for docker.io)."""
    if ref.domain != "docker.io":
        return [RegistryClient(ref.domain, options, auth)]
    return [*(mirror_client(m, options) for m in options.mirrors), RegistryClient(options.hub_host, options, auth)]


def skippable(exc: BaseException) -> bool:
    """Whether a mirror's failure moves the pull on to the next endpoint (unreachable, no such
    manifest, a server error, or asks for credentials it is not sent); other errors (a bad
    manifest, a platform mismatch) do not."""
    if isinstance(exc, RegistryError):
        return exc.status == 0 or exc.status == 404 or exc.status >= 500
    return isinstance(exc, (NotFound, Unavailable, Forbidden))


async def first_answer(clients: list[RegistryClient], ask: Callable[[RegistryClient], Awaitable[T]],
                       what: str) -> tuple[RegistryClient, T]:
    """``ask`` each client in order; a mirror's skippable failure moves on to the next (logged),
    the last endpoint's failure is raised. Returns the client that answered and its answer."""
    for i, client in enumerate(clients):
        try:
            return client, await ask(client)
        except Exception as exc:
            if i == len(clients) - 1 or not skippable(exc):
                raise
            log.info("%s: mirror %s skipped: %s", what, client.base_url or client.host, exc)
    raise AssertionError("no endpoint to pull from")
