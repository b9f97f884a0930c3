"""Request parsing and response helpers shared by every route module of the front."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from aiohttp import web

from dockyard.errors import InvalidArgument
from dockyard.kernel import Kernel
from dockyard.server import KERNEL_KEY

FALSE_WORDS = frozenset({"", "0", "false", "no", "none", "off"})


def kernel_of(request: web.Request) -> Kernel:
    return request.app[KERNEL_KEY]  # type: ignore[return-value]


def qbool(request: web.Request, name: str, default: bool = False) -> bool:
    """Docker's query booleans: clients send 1/0, True/False, true/false."""
    if name not in request.query:
        return default
    return request.query[name].strip().lower() not in FALSE_WORDS


def qint(request: web.Request, name: str, default: int | None = None) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid value for {name!r}: {raw!r} is not an integer") from exc


async def read_json(request: web.Request, *, allow_empty: bool = True, schema: dict[str, Any] | None = None,
                    struct: str = "") -> dict[str, Any]:
    """The JSON object body; an empty body is ``{}`` (CLI 28 sends none for some calls). With
    ``schema`` (see :mod:`dockyard_api_docker.bodies`) a value of the wrong type is a 400 worded
    as dockerd's decoder; JSON nested too deeply to decode is a 400 too (Go's decoder stops at
    10,000 levels, Python's parser at its recursion limit)."""
    raw = await request.read()
    if not raw.strip():
        if allow_empty:
            return {}
        raise InvalidArgument("request body is empty; expected a JSON object")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"invalid JSON body: {exc}") from exc
    except RecursionError:
        raise InvalidArgument("invalid JSON body: exceeded max depth") from None
    if body is None:
        return {}
    if not isinstance(body, dict):
        raise InvalidArgument(f"invalid JSON body: expected an object, got {type(body).__name__}")
    if schema is not None:
        from dockyard_api_docker.bodies import check

        check(body, schema, struct)
    return body


#: Above this many bytes (estimated), a JSON answer is encoded in a worker thread: a container
#: with a label of megabytes must not stall every other client while ``docker ps`` is encoded.
LARGE_JSON = 1 << 20


#: A string longer than this is escaped in pieces when a large answer is encoded: json's C
#: encoder holds the GIL for a whole string, and the event loop would wait for it.
PIECE = 1 << 18


def _encode(data: Any) -> bytes:
    return (json.dumps(data, separators=(",", ":")) + "\n").encode()


def _encode_large(data: Any) -> bytes:
    """:func:`_encode`'s bytes, made in small steps (for a worker thread: between steps the
    event loop gets the GIL back)."""
    parts: list[str] = []
    stack: list[Any] = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, _Raw):
            parts.append(item.text)
        elif isinstance(item, str):
            if len(item) <= PIECE:
                parts.append(json.dumps(item))
            else:
                parts.append('"')
                parts.extend(json.dumps(item[i:i + PIECE])[1:-1] for i in range(0, len(item), PIECE))
                parts.append('"')
        elif isinstance(item, dict):
            todo: list[Any] = [_Raw("{")]
            for i, (k, v) in enumerate(item.items()):
                todo += [_Raw(("," if i else "") + json.dumps(k if isinstance(k, str) else str(k)) + ":"), v]
            todo.append(_Raw("}"))
            stack.extend(reversed(todo))
        elif isinstance(item, (list, tuple)):
            todo = [_Raw("[")]
            for i, v in enumerate(item):
                todo += [_Raw(","), v] if i else [v]
            todo.append(_Raw("]"))
            stack.extend(reversed(todo))
        else:
            parts.append(json.dumps(item))
    parts.append("\n")
    return "".join(parts).encode()


class _Raw:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _larger_than(data: Any, limit: int) -> bool:
    """Whether ``data`` encodes to more than about ``limit`` bytes: a walk that counts string
    lengths (O(1) each) and stops as soon as it knows."""
    total, stack = 0, [data]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item) + 2
        elif isinstance(item, dict):
            total += 2 * len(item) + 2
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            total += len(item) + 2
            stack.extend(item)
        else:
            total += 8
        if total > limit:
            return True
    return False


class JsonResponse(web.Response):
    """A JSON answer encoded when it is sent: at once when small, in a worker thread when
    large (the event loop keeps serving everyone else)."""

    def __init__(self, data: Any, status: int = 200) -> None:
        super().__init__(status=status, content_type="application/json")
        self.data = data
        if not _larger_than(data, LARGE_JSON):
            self.body = _encode(data)
            self.data = None

    async def prepare(self, request: web.BaseRequest) -> Any:
        if self.data is not None:
            self.body = await asyncio.to_thread(_encode_large, self.data)
            self.data = None
        return await super().prepare(request)


def json_response(data: Any, status: int = 200) -> web.Response:
    return JsonResponse(data, status)


def no_content() -> web.Response:
    return web.Response(status=204)


@contextlib.contextmanager
def temp_path(prefix: str) -> Iterator[str]:
    """A temporary file's path, removed afterwards (whatever the handler did with it)."""
    fd, tmp = tempfile.mkstemp(prefix=prefix)
    os.close(fd)
    try:
        yield tmp
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


async def send_tar(request: web.Request, path: str, headers: dict[str, str] | None = None) -> web.StreamResponse:
    """Stream the tar at ``path`` as ``application/x-tar`` with its length."""
    resp = web.StreamResponse(status=200, headers=headers)
    resp.content_type = "application/x-tar"
    resp.content_length = os.path.getsize(path)
    await resp.prepare(request)
    with open(path, "rb") as fh:
        while chunk := await asyncio.to_thread(fh.read, 1 << 16):
            await resp.write(chunk)
    await resp.write_eof()
    return resp


class AsyncBodyReader:
    """A blocking ``read`` (for a worker thread) over an async byte source, e.g. an aiohttp
    request body: ``AsyncBodyReader(loop, request.content.read)``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, read: Callable[[int], Any]) -> None:
        self._loop = loop
        self._read = read

    async def _fill(self, size: int) -> bytes:
        # One trip to the loop per ``size`` bytes, however small the socket's pieces are.
        parts: list[bytes] = []
        got = 0
        while got < size:
            chunk = await self._read(size - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        return b"".join(parts)

    def read(self, n: int = -1) -> bytes:
        size = n if n is not None and n > 0 else 1 << 20
        return asyncio.run_coroutine_threadsafe(self._fill(size), self._loop).result()
