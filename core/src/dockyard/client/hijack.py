"""The HTTP upgrade ("hijack") of attach and exec: ``POST ... Connection: Upgrade, Upgrade: tcp``,
``101 UPGRADED``, then the connection is a raw two-way stream (``attach-and-streams.md`` §3-4).

One handshake for every client and every transport (unix socket, TCP, TLS). The request is
written and the answer's header read by hand rather than through ``http.client``: its response
object buffers past the header, and those bytes — the first output of a fast container — would
be lost with it; they are kept and returned first by :class:`Hijacked`. An error answer is
parsed by ``http.client`` (length, chunked or until close) and raised as the typed error.
"""

from __future__ import annotations

import io
import json
import socket
from typing import Any

from dockyard import errors as e
from dockyard.client import request_target
from dockyard.client.address import DaemonAddress
from dockyard.client.errors import ConnectionFailed, api_error

_MAX_HEAD = 64 * 1024


class Hijacked:
    """The raw two-way stream after ``101 UPGRADED``.

    ``read`` returns the bytes that arrived with the answer's header first, then what the socket
    gives; b'' at end of stream (a reset or a timeout ends the stream the same way: the callers
    then ask the daemon for the exit code). ``close_write`` half-closes: the daemon sees the end
    of stdin and keeps sending output.
    """

    def __init__(self, sock: socket.socket, leftover: bytes = b"") -> None:
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
        """``shutdown(SHUT_WR)`` of the TCP (or unix) connection. Under TLS this is the base
        ``socket`` method: ``SSLSocket.shutdown`` would drop the TLS state and leave the socket
        unreadable; docker half-closes the raw TCP connection under TLS too, without a
        close_notify (``tlsClientCon.CloseWrite``)."""
        try:
            socket.socket.shutdown(self.sock, socket.SHUT_WR)
        except OSError:
            pass

    def settimeout(self, timeout: float | None) -> None:
        self.sock.settimeout(timeout)

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Hijacked:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hijack(address: DaemonAddress, path: str, params: dict[str, Any] | None = None, body: Any = None,
           timeout: float | None = 60.0) -> Hijacked:
    """POST ``path`` asking for the upgrade; the raw stream after ``101 UPGRADED``.

    ``200`` is taken as a hijacked answer too: engines that do not implement the upgrade (older
    dockerd, podman without the header) answer 200 and then stream the same way. Any other status
    raises the typed error of the answer's ``message`` (404 :class:`~dockyard.errors.NotFound`,
    409 :class:`~dockyard.errors.Conflict`...); an unreachable daemon raises ``ConnectionFailed``.
    ``timeout`` bounds the connect and the handshake; the stream itself has none.
    """
    sock = address.connect(timeout)
    try:
        data = json.dumps(body).encode() if body is not None else b""
        host = address.hostname if address.scheme in ("unix", "npipe") else f"{address.hostname}:{address.port}"
        head = (f"POST {request_target(path, params)} HTTP/1.1\r\nHost: {host}\r\n"
                "Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\n\r\n").encode()
        sock.sendall(head + data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionFailed(f"the daemon at {address} closed the connection during POST {path}")
            buf += chunk
            if len(buf) > _MAX_HEAD:
                raise e.DockyardError(f"the daemon at {address} sent no end of header for POST {path}")
        header, _, rest = buf.partition(b"\r\n\r\n")
        status_line = header.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        if status in (101, 200):
            sock.settimeout(None)
            return Hijacked(sock, rest)
        raise api_error(status, _error_body(header + b"\r\n\r\n" + rest, sock), f"POST {path}")
    except OSError as exc:
        sock.close()
        raise ConnectionFailed(f"cannot talk to the dockyard daemon at {address}: {exc}") from exc
    except BaseException:
        sock.close()
        raise


class _Replay(io.RawIOBase):
    """What was already read, then the socket: lets ``http.client`` parse an error answer."""

    def __init__(self, data: bytes, sock: socket.socket) -> None:
        self._data, self._sock = data, sock

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        if self._data:
            n = min(len(b), len(self._data))
            b[:n], self._data = self._data[:n], self._data[n:]
            return n
        try:
            chunk = self._sock.recv(len(b))
        except OSError:
            return 0
        b[:len(chunk)] = chunk
        return len(chunk)


class _ReplaySocket:
    def __init__(self, data: bytes, sock: socket.socket) -> None:
        self._raw = _Replay(data, sock)

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(self._raw)


def _error_body(answer: bytes, sock: socket.socket) -> bytes:
    import http.client

    resp = http.client.HTTPResponse(_ReplaySocket(answer, sock), method="POST")  # type: ignore[arg-type]
    try:
        resp.begin()
        return resp.read()
    except (http.client.HTTPException, OSError):
        return b""
