"""A small synchronous Docker Engine API client for the ``dockyard`` CLI and plugin CLIs.

The standard library's ``http.client`` keeps ``dockyard`` start-up cheap (importing aiohttp
costs more than the CLI's whole 100 ms budget). Errors come back as the typed exceptions the
API front mapped them from.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlparse

from dockyard import errors as e

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"
API_PREFIX = "/v1.41"

_BY_STATUS: dict[int, type[e.DockyardError]] = {
    304: e.NotModified, 400: e.InvalidArgument, 403: e.Forbidden, 404: e.NotFound,
    409: e.Conflict, 501: e.Unavailable, 503: e.Unavailable,
}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self._path)
        self.sock = sock


class ConnectionFailed(e.Unavailable):
    """The daemon could not be reached."""


class Client:
    def __init__(self, host: str | None = None, timeout: float | None = 60.0) -> None:
        self.host = host or os.environ.get("DOCKYARD_HOST") or DEFAULT_HOST
        self.timeout = timeout
        url = urlparse(self.host)
        if url.scheme not in ("unix", "tcp", "http"):
            raise e.InvalidArgument(f"invalid host {self.host!r}: expected unix:///path or tcp://host:port")
        self._url = url

    def _conn(self, timeout: float | None) -> http.client.HTTPConnection:
        if self._url.scheme == "unix":
            return _UnixConnection(self._url.path or self._url.netloc, timeout)
        return http.client.HTTPConnection(self._url.hostname or "localhost", self._url.port or 2375,
                                          timeout=timeout)

    def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                body: Any = None, headers: dict[str, str] | None = None,
                timeout: float | None = -1.0) -> http.client.HTTPResponse:
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None}, doseq=True)
        url = API_PREFIX + quote(path, safe="/:@") + (f"?{query}" if query else "")
        conn = self._conn(self.timeout if timeout == -1.0 else timeout)
        hdrs = dict(headers or {})
        data: Any = None
        chunked = False
        if hasattr(body, "read"):  # a file: streamed with chunked encoding (archives are large)
            data, chunked = _chunks(body), True
            hdrs.setdefault("Content-Type", "application/x-tar")
        elif isinstance(body, (bytes, bytearray)):
            data = bytes(body)
        elif body is not None:
            data = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        try:
            conn.request(method, url, body=data, headers=hdrs, encode_chunked=chunked)
            resp = conn.getresponse()
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ConnectionFailed(f"cannot connect to the dockyard daemon at {self.host}: {exc.strerror}. "
                                   "Is dockyardd running?") from exc
        except OSError as exc:
            raise ConnectionFailed(f"cannot talk to the dockyard daemon at {self.host}: {exc}") from exc
        if resp.status >= 300:
            raw = resp.read()
            conn.close()
            try:
                message = json.loads(raw).get("message", "") if raw else ""
            except (ValueError, AttributeError):
                message = raw.decode(errors="replace")
            exc_type = _BY_STATUS.get(resp.status, e.DockyardError)
            raise exc_type(message or f"HTTP {resp.status} from {method} {path}")
        return resp

    def get(self, path: str, **params: Any) -> Any:
        return _json(self.request("GET", path, params))

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return _json(self.request("POST", path, params, body=body))

    def delete(self, path: str, **params: Any) -> Any:
        return _json(self.request("DELETE", path, params))

    def stream_json(self, method: str, path: str, params: dict[str, Any] | None = None,
                    body: Any = None, headers: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Newline-delimited JSON objects of a streaming answer (events, pull, build...)."""
        resp = self.request(method, path, params, body=body, headers=headers, timeout=None)
        try:
            for line in resp:
                line = line.strip()
                if line:
                    yield json.loads(line)
        finally:
            resp.close()


def _chunks(f: Any, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk


def _json(resp: http.client.HTTPResponse) -> Any:
    raw = resp.read()
    resp.close()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
