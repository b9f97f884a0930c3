"""The one Docker Engine API client of dockyard's command lines: ``dockyard``, its plugin
commands (images, containers, build, pull/push) and ``dockyard compose``.

* :func:`resolve_address` — ``-H`` → ``DOCKYARD_HOST`` → ``DOCKER_HOST`` (with docker's TLS
  variables) → dockyardd's socket, as a :class:`DaemonAddress` (``address.py``);
* :class:`Client` — requests over a unix socket, TCP or TLS; errors come back as the typed
  exceptions the API front mapped them from;
* :meth:`Client.hijack` — the upgraded attach/exec stream (``hijack.py``);
* :func:`demux`, :func:`copy_output`, :func:`attach_session` — the 8-byte multiplexed stream
  and an interactive session (``streams.py``);
* :func:`human_size`, :func:`bytes_size` — docker's size formats (``units.py``).

The standard library's ``http.client`` keeps start-up cheap (importing aiohttp costs more than
the CLI's whole 100 ms budget); ``ssl`` is imported by this package only to connect with TLS
(``http.client`` itself imports it, about 3 ms of its 11 ms here).
"""

from __future__ import annotations

import http.client
import importlib
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from dockyard import errors as e
from dockyard.client.address import DEFAULT_HOST, DaemonAddress, TlsFiles, resolve_address, tls_from_env
from dockyard.client.errors import ConnectionFailed, TlsFailed, api_error

if TYPE_CHECKING:
    from dockyard.client.hijack import Hijacked
    from dockyard.client.streams import Demuxer, Frame, StreamError, attach_session, copy_output, demux
    from dockyard.client.units import bytes_size, human_size

__all__ = [
    "API_PREFIX", "DEFAULT_HOST", "Client", "ConnectionFailed", "DaemonAddress", "Demuxer", "Frame",
    "Hijacked", "StreamError", "TlsFailed", "TlsFiles", "attach_session", "bytes_size", "copy_output",
    "demux", "human_size", "json_lines", "read_json", "request_target", "resolve_address", "tls_from_env",
]

API_PREFIX = "/v1.41"

#: Names served from a submodule on first use: most commands neither attach nor print sizes, and
#: importing ``hijack``, ``streams`` and ``units`` up front would cost each of them about 0.5 ms
#: (2.3 ms where no bytecode is cached, as in this workspace: PYTHONDONTWRITEBYTECODE=1).
_LAZY = {"Hijacked": "hijack", "Demuxer": "streams", "Frame": "streams", "StreamError": "streams",
         "attach_session": "streams", "copy_output": "streams", "demux": "streams",
         "bytes_size": "units", "human_size": "units"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dockyard.client' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"dockyard.client.{module}"), name)
    globals()[name] = value
    return value


def request_target(path: str, params: dict[str, Any] | None) -> str:
    """``/v1.41/<path>?<query>``; None values are left out, lists repeated (``names=a&names=b``)."""
    query = urlencode({k: v for k, v in (params or {}).items() if v is not None}, doseq=True)
    return API_PREFIX + quote(path, safe="/:@") + (f"?{query}" if query else "")


class _Connection(http.client.HTTPConnection):
    """HTTP over whatever :meth:`DaemonAddress.connect` opens: a unix socket, TCP or TLS."""

    def __init__(self, address: DaemonAddress, timeout: float | None) -> None:
        super().__init__(address.hostname, address.port or None, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = self._address.connect(self.timeout)


class Client:
    """A synchronous client of one daemon. ``host`` is an address (``unix:///path``,
    ``tcp://host:port``) or a resolved :class:`DaemonAddress`; None resolves it from the
    environment (:func:`resolve_address`). ``host`` then holds the address as written, for
    messages; ``address`` the resolved one."""

    def __init__(self, host: str | DaemonAddress | None = None, timeout: float | None = 60.0) -> None:
        self.address = host if isinstance(host, DaemonAddress) else resolve_address(host)
        self.host = str(self.address)
        self.timeout = timeout

    def request(self, method: str, path: str, params: dict[str, Any] | None = None,
                body: Any = None, headers: dict[str, str] | None = None,
                timeout: float | None = -1.0) -> http.client.HTTPResponse:
        """One request; the response of a 2xx answer (read and close it), else the typed error.
        A body with ``read`` is streamed with chunked encoding, bytes are sent as they are,
        anything else as JSON. ``timeout`` -1 means the client's."""
        conn = _Connection(self.address, self.timeout if timeout == -1.0 else timeout)
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
            conn.request(method, request_target(path, params), body=data, headers=hdrs, encode_chunked=chunked)
            resp = conn.getresponse()
        except e.DockyardError:  # ConnectionFailed / TlsFailed from connect
            conn.close()
            raise
        except OSError as exc:
            conn.close()
            raise self._failure(exc) from exc
        if resp.status >= 300:
            raw = resp.read()
            conn.close()
            raise api_error(resp.status, raw, f"{method} {path}")
        return resp

    def _failure(self, exc: OSError) -> ConnectionFailed:
        if self.address.tls is not None:
            import ssl

            if isinstance(exc, ssl.SSLError):
                return TlsFailed(f"TLS with the daemon at {self.host} failed: {exc}")
        return ConnectionFailed(f"cannot talk to the dockyard daemon at {self.host}: {exc}")

    def get(self, path: str, **params: Any) -> Any:
        return read_json(self.request("GET", path, params))

    def post(self, path: str, body: Any = None, **params: Any) -> Any:
        return read_json(self.request("POST", path, params, body=body))

    def delete(self, path: str, **params: Any) -> Any:
        return read_json(self.request("DELETE", path, params))

    def stream_json(self, method: str, path: str, params: dict[str, Any] | None = None,
                    body: Any = None, headers: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Newline-delimited JSON objects of a streaming answer (events, pull, build...); the
        request is made when the iteration starts."""
        yield from json_lines(self.request(method, path, params, body=body, headers=headers, timeout=None))

    def hijack(self, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Hijacked:
        """POST ``path`` with the upgrade headers; the raw stream after ``101 UPGRADED``
        (attach, exec start). See :func:`dockyard.client.hijack.hijack`."""
        from dockyard.client.hijack import hijack

        return hijack(self.address, path, params, body, timeout=self.timeout)


def _chunks(f: Any, size: int = 1 << 20) -> Iterator[bytes]:
    while chunk := f.read(size):
        yield chunk


def read_json(resp: http.client.HTTPResponse) -> Any:
    """The decoded JSON body of a response (None when empty, the text when it is not JSON);
    the response is closed."""
    raw = resp.read()
    resp.close()
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def json_lines(resp: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The newline-delimited JSON objects of a streaming response; the response is closed at the
    end (or when the iteration is abandoned)."""
    try:
        for line in resp:
            line = line.strip()
            if line:
                yield json.loads(line)
    finally:
        resp.close()
