"""Feature hooks: API routes and middlewares served by ``dockyardd``.

The daemon owns only the HTTP server (aiohttp on a unix socket or TCP). Every route comes from a
plugin through :meth:`ApiSpecs.dockyard_api_routes`: the Docker Engine API front
(``dockyard-api-docker``) is such a plugin, and so is any extension (builder, compose...).
Routes marked ``versioned`` are also served under ``/v{api_version}/...``; the front that owns
the dialect checks the version in a middleware.

.. versionadded:: 0.1
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dockyard.specs._base import hookspec

if TYPE_CHECKING:
    from dockyard.kernel import Kernel

Handler = Callable[[Any], Awaitable[Any]]  # aiohttp request -> response


@dataclass(frozen=True)
class ApiRoute:
    """One HTTP route. ``path`` uses aiohttp syntax (``/containers/{id}/json``)."""

    method: str
    path: str
    handler: Handler
    name: str = ""
    versioned: bool = True
    dialect: str = "docker"


@dataclass(frozen=True)
class ApiFront:
    """A plugin that serves an API dialect: its version negotiation, error format, shapes.

    Routes of a dialect (``ApiRoute.dialect``) are only served when a front for that dialect
    is installed; otherwise the daemon refuses to start and names the distribution
    (``dockyard-api-<dialect>``).
    """

    name: str
    dialect: str
    description: str = ""


@dataclass(frozen=True)
class ApiMiddleware:
    """An aiohttp middleware; lower ``order`` runs first (outermost)."""

    name: str
    middleware: Callable[..., Awaitable[Any]]
    order: int = 100


class ApiSpecs:
    @hookspec
    def dockyard_api_routes(self, kernel: Kernel) -> Iterable[ApiRoute]:
        """Routes this plugin serves. Collected from every plugin at daemon start.

        Two plugins routing the same method and path is a PluginConflictError naming both.

        Example::

            @hookimpl
            def dockyard_api_routes(kernel):
                async def ping(request):
                    return web.Response(text="OK")
                return [ApiRoute("GET", "/_ping", ping, versioned=True)]

        .. versionadded:: 0.1
        """

    @hookspec
    def dockyard_api_fronts(self, kernel: Kernel) -> Iterable[ApiFront]:
        """API dialects this plugin serves as a front (``docker`` for the Docker Engine API).

        .. versionadded:: 0.1
        """

    @hookspec
    def dockyard_api_middlewares(self, kernel: Kernel) -> Iterable[ApiMiddleware]:
        """aiohttp middlewares (error mapping, version checks, tracing), ordered by ``order``.

        .. versionadded:: 0.1
        """
