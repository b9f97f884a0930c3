"""A Docker plugin API v1 server for the test plugins: stdlib only (no dockyard), as a plugin
written by someone else would be. ``serve(socket, implements, handlers)`` answers
``POST /Plugin.Activate`` and ``POST /<Interface>.<Method>`` on a unix socket until SIGTERM; an
unknown method is a 404, as the protocol says."""

from __future__ import annotations

import json
import os
import signal
import socketserver
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any

CONTENT_TYPE = "application/vnd.docker.plugins.v1.1+json"
Handler = Callable[[dict[str, Any]], Any]


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128  # the daemon may call many times at once (concurrent mounts)


class _TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def _tls_wrap(server: socketserver.TCPServer) -> None:
    """With PLUGIN_TLS_CERT/KEY (and PLUGIN_TLS_CA: client certificates required), serve TLS."""
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(os.environ["PLUGIN_TLS_CERT"], os.environ["PLUGIN_TLS_KEY"])
    if os.environ.get("PLUGIN_TLS_CA"):
        ctx.load_verify_locations(os.environ["PLUGIN_TLS_CA"])
        ctx.verify_mode = ssl.CERT_REQUIRED
    server.socket = ctx.wrap_socket(server.socket, server_side=True)


def serve(path: str, implements: list[str], handlers: dict[str, Handler], log: Any = None) -> None:
    routes = {"Plugin.Activate": lambda _body: {"Implements": implements}, **handlers}
    lock = threading.Lock()  # one call at a time: the plugins keep plain dicts

    class Req(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            method = self.path.lstrip("/")
            if log is not None:
                log.write(json.dumps({"method": method, "accept": self.headers.get("Accept"),
                                      "body": raw.decode(errors="replace")}) + "\n")
                log.flush()
            fn = routes.get(method)
            if fn is None:
                return self._send(404, b'{"Err": "no such method"}')
            try:
                body = json.loads(raw) if raw.strip() else {}
            except ValueError:
                return self._send(400, b'{"Err": "invalid JSON"}')
            with lock:
                try:
                    reply = fn(body)
                except Exception as exc:  # noqa: BLE001 - the protocol's error form
                    reply = {"Err": str(exc) or type(exc).__name__}
            if isinstance(reply, bytes):  # a hostile plugin's raw answer
                return self._send(200, reply)
            self._send(200, json.dumps(reply).encode())

        def _send(self, status: int, data: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    if path.startswith("tcp://"):  # tcp://127.0.0.1:PORT, TLS when PLUGIN_TLS_CERT is set
        host, _, port = path[len("tcp://"):].rpartition(":")
        server: socketserver.BaseServer = _TcpServer((host, int(port)), Req)
        if os.environ.get("PLUGIN_TLS_CERT"):
            _tls_wrap(server)
        path = os.environ.get("PLUGIN_READY_FILE", "")
        if path:
            open(path, "w").close()
    elif "://" in path:  # a URL taken for a path would make a directory named after its scheme
        raise SystemExit(f"{path}: a socket path or tcp://HOST:PORT")
    else:
        if os.path.exists(path):
            os.unlink(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        server = _Server(path, Req)

    def stop(*_: Any) -> None:
        threading.Thread(target=server.shutdown).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
        if path and os.path.exists(path):
            os.unlink(path)
    sys.exit(0)
