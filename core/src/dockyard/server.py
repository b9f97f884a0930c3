"""The HTTP server shell: an aiohttp application assembled from plugin-provided routes.

The core knows no API dialect. It collects :class:`ApiRoute` and :class:`ApiMiddleware`
descriptors from the ``dockyard_api_routes`` / ``dockyard_api_middlewares`` hooks, refuses two
plugins routing the same method and path, serves versioned routes under
``/v{api_version}/...`` too, and listens on the configured unix sockets and TCP addresses.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from aiohttp import web

from dockyard.errors import InvalidArgument, PluginConflictError, Unavailable
from dockyard.specs.api import ApiMiddleware, ApiRoute

if TYPE_CHECKING:
    import ssl

    from dockyard.kernel import Kernel

log = logging.getLogger("dockyard.api")

KERNEL_KEY = web.AppKey("dockyard.kernel", object)
VERSION_PATTERN = r"{api_version:v[0-9]+\.[0-9]+}"


@dataclass(frozen=True)
class Listener:
    kind: str  # unix | tcp | fd (sockets passed by the supervisor) | npipe (Windows named pipe)
    address: str  # socket path, or host
    port: int = 0


def parse_host(value: str) -> Listener:
    """Parse a ``-H`` value: ``unix:///path``, ``tcp://host:port``, or ``fd://`` (every socket
    the supervisor passed: socket activation) and ``fd://NAME`` (those named NAME), or a Windows
    named pipe ``npipe:////./pipe/NAME`` (parsed everywhere, served only on Windows: see
    :mod:`dockyard.npipe`)."""
    if value.strip().lower().startswith("npipe:"):
        from dockyard import npipe

        return Listener("npipe", npipe.parse(value))
    url = urlparse(value)
    if url.scheme == "fd":
        return Listener("fd", url.netloc or url.path.lstrip("/"))
    if url.scheme == "unix":
        path = url.path or url.netloc
        if not path:
            raise InvalidArgument(f"invalid host {value!r}: unix socket needs a path")
        return Listener("unix", path)
    if url.scheme == "tcp":
        if not url.hostname or not url.port:
            raise InvalidArgument(f"invalid host {value!r}: expected tcp://HOST:PORT")
        return Listener("tcp", url.hostname, url.port)
    raise InvalidArgument(f"invalid host {value!r}: expected unix:///path, tcp://host:port, fd:// "
                          "or npipe:////./pipe/NAME")


def collect_routes(kernel: Kernel) -> list[tuple[str, ApiRoute]]:
    """``(plugin name, route)`` for every route of every plugin; clashes raise."""
    owners: dict[tuple[str, str], str] = {}
    out: list[tuple[str, ApiRoute]] = []
    for impl in kernel.hook.dockyard_api_routes.get_hookimpls():
        for route in impl.function(kernel=kernel) or ():
            key = (route.method.upper(), route.path)
            if key in owners:
                raise PluginConflictError("API route", f"{key[0]} {key[1]}", [owners[key], impl.plugin_name])
            owners[key] = impl.plugin_name
            out.append((impl.plugin_name, route))
    return out


def collect_middlewares(kernel: Kernel) -> list[ApiMiddleware]:
    mws: list[ApiMiddleware] = []
    for result in kernel.hook.dockyard_api_middlewares(kernel=kernel):
        mws.extend(result or ())
    return sorted(mws, key=lambda m: (m.order, m.name))


def check_fronts(kernel: Kernel, routes: list[tuple[str, ApiRoute]]) -> None:
    """Every route's dialect needs an installed front; none at all means nothing to serve."""
    served = {f.dialect for result in kernel.hook.dockyard_api_fronts(kernel=kernel) for f in result or ()}
    if not served:
        raise Unavailable("no API front is installed, so dockyardd would serve nothing; "
                          "install one with: pip install dockyard-api-docker")
    orphans: dict[str, set[str]] = {}
    for plugin, route in routes:
        if route.dialect not in served:
            orphans.setdefault(route.dialect, set()).add(plugin)
    for dialect, plugins in sorted(orphans.items()):
        raise Unavailable(f"plugins {', '.join(sorted(plugins))} serve {dialect!r} API routes but no "
                          f"front for that dialect is installed: pip install dockyard-api-{dialect}")


@web.middleware
async def log_requests(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                       ) -> web.StreamResponse:
    """dockerd's debug line for every request it handles: ``Calling GET /v1.41/info``."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug("Calling %s %s", request.method, request.path)
    return await handler(request)


def build_app(kernel: Kernel) -> web.Application:
    routes = collect_routes(kernel)
    check_fronts(kernel, routes)
    app = web.Application(middlewares=[log_requests, *(m.middleware for m in collect_middlewares(kernel))],
                          client_max_size=0, handler_args={"max_field_size": 65536})
    app[KERNEL_KEY] = kernel
    for _plugin, route in routes:
        method = route.method.upper()
        name = route.name or None
        app.router.add_route(method, route.path, route.handler, name=name)
        if route.versioned:
            app.router.add_route(method, "/" + VERSION_PATTERN + route.path, route.handler)
    return app


DEFAULT_SOCKET_GROUP = "docker"


def socket_gid(group: str | None) -> int | None:
    """The group of the unix sockets, as dockerd's ``-G``: a name or number; None (not
    configured) means ``docker`` when that group exists, else the daemon's own group. A
    configured group that does not exist refuses the start."""
    import grp

    name = DEFAULT_SOCKET_GROUP if group is None else group
    if not name:
        return None
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        if group is None:
            return None
        raise InvalidArgument(f"group {name} not found: the unix socket's group (-G/--group) must exist") from None


def bind_unix(path: str, gid: int | None = None) -> socket.socket:
    """Bind a unix socket at ``path``, replacing a stale socket file (never another file);
    mode 0660, owned by group ``gid`` when given (dockerd's ``-G``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.exists() or p.is_symlink():
        if not stat.S_ISSOCK(p.lstat().st_mode):
            raise InvalidArgument(f"{path} exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX)
        try:
            probe.connect(path)
        except OSError:
            p.unlink()  # stale: nobody is listening
        else:
            raise InvalidArgument(f"another daemon is listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    if gid is not None:
        os.chown(path, -1, gid)
    os.chmod(path, 0o660)
    return sock


def activated_sockets(lst: Listener, passed: list[tuple[str, socket.socket]]) -> list[socket.socket]:
    """The passed sockets an ``fd://`` listener serves (all, or those named ``lst.address``)."""
    if not passed:
        raise InvalidArgument("-H fd:// needs sockets passed by the supervisor (socket activation: "
                              "LISTEN_FDS), and none were")
    socks = [s for name, s in passed if not lst.address or name == lst.address]
    if not socks:
        raise InvalidArgument(f"no passed socket is named {lst.address!r} (names: "
                              f"{', '.join(sorted({n for n, _s in passed}))})")
    return socks


async def serve(app: web.Application, listeners: list[Listener],
                ssl_context: ssl.SSLContext | None = None,
                passed: list[tuple[str, socket.socket]] | None = None,
                socket_group: int | None = None) -> tuple[web.AppRunner, list[str]]:
    """Listen on every listener; ``ssl_context`` (dockyard.tlsconfig) applies to the TCP ones
    only, as in dockerd: a unix socket is guarded by its file mode. ``passed`` are the sockets
    of socket activation (:func:`dockyard.sdnotify.listen_fds`), served by ``fd://`` listeners;
    their files belong to the supervisor and are never removed."""
    for lst in listeners:  # before anything is bound: a clear error off Windows
        if lst.kind == "npipe":
            from dockyard import npipe

            npipe.require_windows(lst.address)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
    await runner.setup()
    bound: list[str] = []
    try:
        for lst in listeners:
            if lst.kind == "fd":
                for sock in activated_sockets(lst, passed or []):
                    sock.setblocking(False)
                    tls = ssl_context if sock.family in (socket.AF_INET, socket.AF_INET6) else None
                    await web.SockSite(runner, sock, ssl_context=tls).start()
                continue
            if lst.kind == "unix":
                site: web.BaseSite = web.SockSite(runner, bind_unix(lst.address, socket_group))
                bound.append(lst.address)
            elif lst.kind == "npipe":  # Windows' proactor loop only (untested in CI)
                site = web.NamedPipeSite(runner, lst.address)
            else:
                site = web.TCPSite(runner, lst.address, lst.port, reuse_address=True,
                                   ssl_context=ssl_context)
            await site.start()
    except BaseException:
        await runner.cleanup()
        for path in bound:
            Path(path).unlink(missing_ok=True)
        raise
    return runner, bound
