"""The engine, seen only through the Docker Engine API.

Plain calls go through dockyard-core's stdlib :class:`dockyard.client.Client`; this module adds
what compose needs beyond it: ``DOCKER_HOST``, streamed logs with the 8-byte multiplexing
headers decoded, and hijacked (``101 UPGRADED``) connections for attach and exec.
"""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlencode, urlparse

from dockyard import errors as e
from dockyard.client import API_PREFIX, DEFAULT_HOST, Client

LABEL = "com.docker.compose"
L_PROJECT = f"{LABEL}.project"
L_SERVICE = f"{LABEL}.service"
L_NUMBER = f"{LABEL}.container-number"
L_ONEOFF = f"{LABEL}.oneoff"
L_HASH = f"{LABEL}.config-hash"
L_WORKDIR = f"{LABEL}.project.working_dir"
L_FILES = f"{LABEL}.project.config_files"
L_ENVFILE = f"{LABEL}.project.environment_file"
L_VERSION = f"{LABEL}.version"
L_NETWORK = f"{LABEL}.network"
L_VOLUME = f"{LABEL}.volume"
L_IMAGE = f"{LABEL}.image"
L_DEPENDS = f"{LABEL}.depends_on"


def resolve_host(explicit: str | None) -> str:
    """``-H``/``DOCKYARD_HOST`` first, then ``DOCKER_HOST``, then dockyardd's default socket."""
    return explicit or os.environ.get("DOCKYARD_HOST") or os.environ.get("DOCKER_HOST") or DEFAULT_HOST


def demux(read: Any) -> Iterator[tuple[int, bytes]]:
    """Split a non-TTY stream into ``(stream, payload)`` frames; ``read(n)`` returns b'' at EOF."""
    while True:
        header = _read_exact(read, 8)
        if len(header) < 8:
            return
        stream, length = header[0], struct.unpack(">I", header[4:8])[0]
        payload = _read_exact(read, length)
        if payload:
            yield stream, payload
        if len(payload) < length:
            return


def _read_exact(read: Any, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


class Hijacked:
    """A raw two-way connection after ``101 UPGRADED``."""

    def __init__(self, sock: socket.socket, leftover: bytes) -> None:
        self.sock = sock
        self._buf = leftover

    def read(self, n: int = 65536) -> bytes:
        if self._buf:
            out, self._buf = self._buf[:n], self._buf[n:]
            return out
        try:
            return self.sock.recv(n)
        except OSError:
            return b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close_write(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


class Engine:
    def __init__(self, host: str | None = None) -> None:
        self.host = resolve_host(host)
        self.client = Client(self.host)
        self._version: dict[str, Any] | None = None

    # -- plain calls --------------------------------------------------------------------------------------
    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(path, **params)

    def post(self, path: str, body: Any = None, timeout: float | None = -1.0, **params: Any) -> Any:
        from dockyard.client import _json

        return _json(self.client.request("POST", path, params, body=body, timeout=timeout))

    def delete(self, path: str, **params: Any) -> Any:
        return self.client.delete(path, **params)

    def version(self) -> dict[str, Any]:
        if self._version is None:
            self._version = self.get("/version") or {}
        return self._version

    @property
    def engine_name(self) -> str:
        comps = self.version().get("Components") or []
        return comps[0].get("Name", "Engine") if comps else "Engine"

    # -- containers ---------------------------------------------------------------------------------------
    def containers(self, project: str | None = None, service: str | None = None, oneoff: bool | None = False,
                   all: bool = True, extra: list[str] | None = None) -> list[dict[str, Any]]:
        labels = [L_PROJECT if project is None else f"{L_PROJECT}={project}"]
        if service is not None:
            labels.append(f"{L_SERVICE}={service}")
        if oneoff is not None:
            labels.append(f"{L_ONEOFF}={'True' if oneoff else 'False'}")
        labels += extra or []
        found = self.get("/containers/json", all=1 if all else 0,
                         filters=json.dumps({"label": labels})) or []
        # Some engines treat label filters as OR or ignore unknown ones: check on our side too.
        want = dict(x.split("=", 1) if "=" in x else (x, None) for x in labels)
        out = []
        for c in found:
            have = c.get("Labels") or {}
            if all_ok(have, want):
                out.append(c)
        return sorted(out, key=lambda c: (have_label(c, L_SERVICE), int(have_label(c, L_NUMBER) or 0)))

    def inspect(self, cid: str) -> dict[str, Any]:
        return self.get(f"/containers/{cid}/json")

    def image(self, ref: str) -> dict[str, Any] | None:
        try:
            return self.get(f"/images/{ref}/json")
        except e.NotFound:
            return None

    def network(self, name: str) -> dict[str, Any] | None:
        try:
            return self.get(f"/networks/{name}")
        except e.NotFound:
            return None

    def volume(self, name: str) -> dict[str, Any] | None:
        try:
            return self.get(f"/volumes/{name}")
        except e.NotFound:
            return None

    # -- streams ------------------------------------------------------------------------------------------
    def stream_json(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None,
                    headers: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
        return self.client.stream_json(method, path, params, body=body, headers=headers)

    def logs(self, cid: str, tty: bool, follow: bool = False, tail: str = "all", timestamps: bool = False,
             since: int | None = None) -> Iterator[tuple[int, bytes]]:
        params: dict[str, Any] = {"stdout": 1, "stderr": 1, "follow": 1 if follow else 0, "tail": tail,
                                  "timestamps": 1 if timestamps else 0}
        if since is not None:
            params["since"] = since
        resp = self.client.request("GET", f"/containers/{cid}/logs", params, timeout=None)
        try:
            if tty:
                while True:
                    chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(65536)
                    if not chunk:
                        return
                    yield 1, chunk
            else:
                yield from demux(resp.read)
        finally:
            resp.close()

    def hijack(self, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Hijacked:
        """POST with ``Connection: Upgrade`` and return the raw connection after the 101."""
        url = urlparse(self.host)
        if url.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            target: Any = url.path or url.netloc
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            target = (url.hostname or "localhost", url.port or 2375)
        try:
            sock.connect(target)
        except OSError as exc:
            sock.close()
            raise e.Unavailable(f"cannot connect to the engine at {self.host}: {exc}") from exc
        query = urlencode({k: v for k, v in (params or {}).items() if v is not None})
        data = json.dumps(body).encode() if body is not None else b""
        head = (f"POST {API_PREFIX}{quote(path, safe='/:@')}{'?' + query if query else ''} HTTP/1.1\r\n"
                f"Host: localhost\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n").encode()
        sock.sendall(head + data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                sock.close()
                raise e.Unavailable(f"the engine closed the connection during {path}")
            buf += chunk
        header, _, rest = buf.partition(b"\r\n\r\n")
        status_line = header.split(b"\r\n", 1)[0].decode(errors="replace")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status not in (101, 200):
            body_text = rest
            sock.settimeout(2)
            try:
                while True:
                    more = sock.recv(65536)
                    if not more:
                        break
                    body_text += more
                    if len(body_text) > 65536:
                        break
            except OSError:
                pass
            sock.close()
            try:
                msg = json.loads(body_text.split(b"\r\n")[-1] or body_text).get("message", "")
            except (ValueError, AttributeError):
                msg = body_text.decode(errors="replace")
            if not msg:
                try:
                    msg = json.loads(body_text[body_text.find(b"{"):body_text.rfind(b"}") + 1]).get("message", "")
                except ValueError:
                    msg = status_line
            exc_type = {404: e.NotFound, 409: e.Conflict, 400: e.InvalidArgument}.get(status, e.DockyardError)
            raise exc_type(msg or status_line)
        return Hijacked(sock, rest)


def all_ok(have: dict[str, str], want: dict[str, str | None]) -> bool:
    for k, v in want.items():
        if k not in have or (v is not None and have[k] != v):
            return False
    return True


def have_label(container: dict[str, Any], key: str) -> str:
    return (container.get("Labels") or (container.get("Config") or {}).get("Labels") or {}).get(key, "")
