"""Version negotiation and the Docker error body, as aiohttp middlewares."""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web

from dockyard import __version__
from dockyard import errors as e

log = logging.getLogger(__name__)

#: dockerd 20.10's range; what docker CLI 28, docker-py 7 and compose v1 negotiate (see
#: shared/reference/docker-engine-api.md §2: advertising 1.41 is the safe choice).
MAX_API = (1, 41)
MIN_API = (1, 24)
API_VERSION = f"{MAX_API[0]}.{MAX_API[1]}"
MIN_API_VERSION = f"{MIN_API[0]}.{MIN_API[1]}"

STATUS: tuple[tuple[type[BaseException], int], ...] = (
    (e.NotModified, 304),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.Forbidden, 403),
    (e.InvalidArgument, 400),
    (e.DriverNotInstalled, 501),
    (e.ServiceNotInstalled, 501),
    (e.Unavailable, 503),
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def status_of(exc: BaseException) -> int:
    for cls, code in STATUS:
        if isinstance(exc, cls):
            return code
    return 500


def error_response(request: web.Request, status: int, message: str) -> web.Response:
    if request.method == "HEAD" or status == 304:
        return web.Response(status=status)  # never a body on HEAD (Go clients choke on it)
    return web.Response(status=status, content_type="application/json",
                        body=json.dumps({"message": message}) + "\n")


def docker_headers(resp: web.StreamResponse) -> None:
    resp.headers.setdefault("Api-Version", API_VERSION)
    resp.headers.setdefault("Docker-Experimental", "false")
    resp.headers.setdefault("Ostype", "linux")
    resp.headers.setdefault("Server", f"Dockyard/{__version__} (linux)")


class ClientGone(web.StreamResponse):
    """What a handler answers when its client hung up mid-stream (``docker logs -f`` killed, a
    ``docker cp`` reader gone, a build's output abandoned): a normal end, as for dockerd. Its
    ``prepare`` raises ``ConnectionResetError``, which aiohttp treats as a premature client
    disconnection (logged at debug), so no traceback reaches the log."""

    async def prepare(self, request: web.BaseRequest) -> None:  # type: ignore[override]
        raise ConnectionResetError("the client hung up")


def no_space(exc: OSError, request: web.Request) -> str:
    """ENOSPC as dockerd words it, naming the full filesystem (the file's, else the data
    root's)."""
    from pathlib import Path

    from dockyard.server import KERNEL_KEY
    from dockyard.store import mount_point

    if exc.filename:
        where = Path(str(exc.filename)).parent
    else:
        kernel = request.app.get(KERNEL_KEY)
        if kernel is None:
            return "no space left on device"
        where = Path(kernel.config.data_root)
    return f"no space left on device: the filesystem at {mount_point(where)} is full"


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def internal_error(exc: BaseException) -> str:
    """A 500's message: what went wrong, without the Python exception's class name (clients show
    this text to users; the traceback is in the daemon's log)."""
    text = str(exc).strip()
    return f"internal error: {text}" if text else "internal error (see the daemon's log)"


@web.middleware
async def docker_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Typed errors become ``{"message": ...}`` with the status Docker clients branch on."""
    try:
        resp = await handler(request)
    except ConnectionError as exc:
        if not client_gone(request):
            log.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(request, 500, internal_error(exc))
        log.debug("%s %s: the client hung up (%s)", request.method, request.path, exc)
        return ClientGone()
    except e.DockyardError as exc:
        resp = error_response(request, status_of(exc), str(exc))
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            log.error("%s %s: %s", request.method, request.path, no_space(exc, request))
            resp = error_response(request, 500, no_space(exc, request))
        else:
            log.exception("unhandled error on %s %s", request.method, request.path)
            resp = error_response(request, 500, internal_error(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        text = "page not found" if exc.status == 404 else exc.reason
        resp = error_response(request, exc.status, text)
    except Exception as exc:  # noqa: BLE001 - a bug must still answer in the API's format
        log.exception("unhandled error on %s %s", request.method, request.path)
        resp = error_response(request, 500, internal_error(exc))
    if not resp.prepared:
        docker_headers(resp)
    return resp


def parse_version(text: str) -> tuple[int, int]:
    major, _, minor = text.lstrip("v").partition(".")
    try:
        return int(major), int(minor)
    except ValueError as exc:
        raise e.InvalidArgument(f"invalid API version {text!r}") from exc


@web.middleware
async def docker_version(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check ``/vX.Y/`` against the supported range and remember it for the handlers."""
    raw = request.match_info.get("api_version")
    version = MAX_API
    if raw:
        version = parse_version(raw)
        if version > MAX_API:
            raise e.InvalidArgument(f"client version {raw[1:]} is too new. Maximum supported API "
                                    f"version is {API_VERSION}")
        if version < MIN_API:
            raise e.InvalidArgument(f"client version {raw[1:]} is too old. Minimum supported API "
                                    f"version is {MIN_API_VERSION}, please upgrade your client to a "
                                    "newer version")
    request["api_version"] = version
    resp = await handler(request)
    if not resp.prepared:
        docker_headers(resp)
    return resp
