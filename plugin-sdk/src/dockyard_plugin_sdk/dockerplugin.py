"""Write a Docker plugin (plugin API v1) in Python: a small server on a unix socket.

What dockerd and dockyard (``dockyard-docker-plugins``) call: ``POST /Plugin.Activate`` (answered
for you with the interfaces your handlers belong to) and ``POST /<Interface>.<Method>`` with a
JSON body. A handler takes the decoded body and returns the reply (a dict); raising
:class:`PluginError` answers ``{"Err": message}`` (the protocol's refusal), any other exception
too, with its text. Unknown methods answer 404, which callers read as "optional method not
implemented". Standard library only (``http.server``), one thread per connection; handlers run
one at a time unless ``serialize=False``::

    from dockyard_plugin_sdk.dockerplugin import DockerPluginServer, PluginError, socket_path

    server = DockerPluginServer(socket_path("myvol"))
    volumes = {}

    @server.handler("VolumeDriver.Create")
    def create(body):
        volumes[body["Name"]] = body.get("Opts") or {}
        return {"Err": ""}

    @server.handler("VolumeDriver.Mount")
    def mount(body):
        if body["Name"] not in volumes:
            raise PluginError(f"no such volume: {body['Name']}")
        return {"Mountpoint": f"/srv/volumes/{body['Name']}", "Err": ""}

    server.serve_forever()          # or: with server.running(): ... (a thread, for tests)

Run the conformance kits against it with
:class:`dockyard_plugin_sdk.conformance.remote.DockerPluginContract`.
"""

from __future__ import annotations

import contextlib
import json
import os
import socketserver
import stat
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

__all__ = ["CONTENT_TYPE", "DockerPluginServer", "PluginError", "socket_path", "unix_socket_path"]

#: What plugin helpers answer with (docker/go-plugins-helpers); callers accept any JSON type.
CONTENT_TYPE = "application/vnd.docker.plugins.v1.1+json"
#: The interface name a plugin lists in ``Implements`` for methods of an API prefix.
_IMPLEMENTS = {"AuthZPlugin": "authz", "LogDriver": "LogDriver", "MetricsCollector": "MetricsCollector"}

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class PluginError(Exception):
    """Raised by a handler: the reply is ``{"Err": str(exc)}`` with status 200."""


def socket_path(name: str, directory: str = "/run/docker/plugins") -> str:
    """Where dockerd and dockyard look for plugin ``name``'s socket."""
    return os.path.join(directory, f"{name}.sock")


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128  # a daemon may call many times at once


def unix_socket_path(address: str) -> str:
    """The socket path of ``address``: a path, or a ``unix://`` URL (``unix:///run/x.sock``).
    Any other scheme is refused (ValueError): a ``tcp://HOST:PORT`` taken for a path would make
    a directory named after its scheme (``tcp:``) wherever the plugin runs."""
    scheme, sep, rest = address.partition("://")
    if sep:
        if scheme != "unix":
            raise ValueError(f"{address!r}: DockerPluginServer serves a unix socket, not a {scheme}:// address "
                             "(a TCP plugin needs a server of its own and a .json spec naming its Addr)")
        address = rest
    if not address:
        raise ValueError("DockerPluginServer needs a socket path")
    return address


class DockerPluginServer:
    """A Docker plugin on the unix socket ``path`` (or ``unix://PATH``); ``implements`` overrides
    the ``Implements`` list derived from the registered handlers (``VolumeDriver.Create`` ->
    ``VolumeDriver``, ``AuthZPlugin.AuthZReq`` -> ``authz``)."""

    def __init__(self, path: str, implements: list[str] | None = None, serialize: bool = True) -> None:
        self.path = unix_socket_path(path)
        self.handlers: dict[str, Handler] = {}
        self._implements = implements
        self._lock = threading.Lock() if serialize else contextlib.nullcontext()
        self._server: _UnixServer | None = None

    @property
    def implements(self) -> list[str]:
        if self._implements is not None:
            return list(self._implements)
        found = {m.split(".", 1)[0] for m in self.handlers}
        return sorted(_IMPLEMENTS.get(i, i) for i in found)

    def handler(self, method: str) -> Callable[[Handler], Handler]:
        """Register a handler for ``Interface.Method``."""
        def register(fn: Handler) -> Handler:
            self.handlers[method] = fn
            return fn
        return register

    def answer(self, method: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The status and reply for one call (what the HTTP layer sends)."""
        if method == "Plugin.Activate":
            return 200, {"Implements": self.implements}
        fn = self.handlers.get(method)
        if fn is None:
            return 404, {"Err": f"{method} is not implemented"}
        with self._lock:
            try:
                reply = fn(body)
            except Exception as exc:  # noqa: BLE001 - the protocol's error form
                return 200, {"Err": str(exc) or type(exc).__name__}
        return 200, reply if isinstance(reply, dict) else {}

    def _request_handler(self) -> type[BaseHTTPRequestHandler]:
        plugin = self

        class Request(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw) if raw.strip() else {}
                except ValueError:
                    return self._send(400, {"Err": "the request body is not JSON"})
                status, reply = plugin.answer(self.path.lstrip("/"), body if isinstance(body, dict) else {})
                self._send(status, reply)

            def _send(self, status: int, reply: dict[str, Any]) -> None:
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        return Request

    def bind(self) -> None:
        """Create the socket (a stale one from a killed plugin is replaced; any other file there
        is refused, never removed)."""
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(os.lstat(self.path).st_mode):
                raise FileExistsError(f"{self.path} exists and is not a socket; refusing to replace it")
            os.unlink(self.path)
        self._server = _UnixServer(self.path, self._request_handler())

    def serve_forever(self) -> None:
        """Serve until :meth:`close` (from another thread or a signal handler's thread)."""
        if self._server is None:
            self.bind()
        assert self._server is not None
        try:
            self._server.serve_forever(poll_interval=0.05)
        finally:
            self._server.server_close()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()

    @contextlib.contextmanager
    def running(self) -> Iterator[DockerPluginServer]:
        """Serve in a thread for the ``with`` block (tests)."""
        self.bind()
        thread = threading.Thread(target=self.serve_forever, name=f"docker-plugin {self.path}", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.close()
            thread.join(5)
