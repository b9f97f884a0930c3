"""A small HTTP/1.1 client on a connected stream socket: the fast path of ``dockyard run``.

``dockyard.client.Client`` is built on ``http.client``, whose import (``email.parser``,
``email.utils``, ``calendar``, ``urllib.parse``...) and ``socket``'s (``enum``, ``selectors``)
cost about 14 ms of a run's client side on a quiet machine and 40 ms on a loaded one (min of 10
``-X importtime`` runs, 2026-12-07; the whole run of ``busybox true`` takes 60-110 ms). This
module imports only C modules already loaded at start-up or nearly free (``_socket``), and speaks
the part of HTTP/1.1 a Docker API client needs: a request with a JSON or empty body; an answer
with a ``Content-Length``, chunked or until-close body; keep-alive; and the upgrade of attach
(``101 UPGRADED``, then a raw two-way stream whose first bytes may have arrived with the
answer's header, ``attach-and-streams.md`` §1).

A :class:`Connection` works on any object with ``sendall``/``recv``/``close``: a unix socket of
its own (:func:`connect_unix`), or what ``DaemonAddress.connect`` opens (TCP, TLS, a named pipe).
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself costs 3-9 ms of imports (collections, functools, re)
if TYPE_CHECKING:
    from typing import Any

API_PREFIX = "/v1.41"
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")
_MAX_HEAD = 64 * 1024
_CHUNK = 65536


class WireError(OSError):
    """The peer broke the protocol or closed the connection too early."""


def quote(text: str, safe: str = "/", plus: bool = False) -> str:
    """``urllib.parse.quote`` (``quote_plus`` with ``plus``) of ``text`` as UTF-8."""
    keep = _UNRESERVED | frozenset(safe.encode())
    out = []
    for byte in text.encode("utf-8"):
        if byte in keep:
            out.append(chr(byte))
        elif plus and byte == 0x20:
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def target(path: str, params: dict[str, Any] | None = None) -> str:
    """``/v1.41/<path>?<query>``, as ``dockyard.client.request_target`` writes it (None values
    left out; lists repeated)."""
    query = []
    for key, value in (params or {}).items():
        if value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else (value,):
            query.append(f"{quote(str(key), '', True)}={quote(str(item), '', True)}")
    return API_PREFIX + quote(path, "/:@") + ("?" + "&".join(query) if query else "")


def connect_unix(path: str, timeout: float | None = None) -> Any:
    """A stream socket connected to the unix socket ``path`` (OSError when it cannot be)."""
    import _socket

    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
    except BaseException:
        sock.close()
        raise
    return sock


class Response:
    """An answer's status line and headers (names in lower case)."""

    def __init__(self, status: int, reason: str, headers: dict[str, str]) -> None:
        self.status, self.reason, self.headers = status, reason, headers

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


class Connection:
    """One HTTP/1.1 connection on ``sock``; ``host`` is the ``Host`` header."""

    def __init__(self, sock: Any, host: str = "localhost") -> None:
        self.sock = sock
        self.host = host
        self.reusable = True
        self._buf = b""

    # ------------------------------------------------------------------ requests
    def send(self, method: str, target: str, body: bytes | None = None,
             content_type: str = "application/json", upgrade: bool = False) -> None:
        """Write one request (``upgrade``: ask for the raw stream, ``Upgrade: tcp``)."""
        head = [f"{method} {target} HTTP/1.1", f"Host: {self.host}"]
        if upgrade:
            head += ["Connection: Upgrade", "Upgrade: tcp"]
        if body is not None:
            head.append(f"Content-Type: {content_type}")
        head.append(f"Content-Length: {len(body) if body is not None else 0}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        self.sock.sendall(data + body if body else data)

    def head(self) -> Response:
        """Read an answer's status line and headers; what arrived after them stays buffered."""
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buf) > _MAX_HEAD:
                raise WireError("no end of the answer's header")
            chunk = self.sock.recv(_CHUNK)
            if not chunk:
                raise WireError("the daemon closed the connection before answering")
            self._buf += chunk
        lines = self._buf[:end].decode("latin-1").split("\r\n")
        self._buf = self._buf[end + 4:]
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise WireError(f"not an HTTP answer: {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if headers.get("connection", "").lower() == "close" or parts[0] == "HTTP/1.0":
            self.reusable = False
        return Response(int(parts[1]), parts[2] if len(parts) > 2 else "", headers)

    def body(self, resp: Response, method: str = "GET") -> bytes:
        """The whole body of ``resp`` (chunked, by length, or until the peer closes)."""
        if method == "HEAD" or resp.status in (204, 304) or 100 <= resp.status < 200:
            return b""
        if "chunked" in resp.headers.get("transfer-encoding", "").lower():
            return self._chunked()
        length = resp.headers.get("content-length")
        if length is not None and length.strip().isdigit():
            return self._exactly(int(length))
        self.reusable = False
        out = [self._buf]
        self._buf = b""
        while chunk := self.sock.recv(_CHUNK):
            out.append(chunk)
        return b"".join(out)

    def json_body(self, resp: Response) -> Any:
        """The JSON value a streamed answer starts with, as soon as it is complete: a chunked
        body is not read to its end (Docker's ``wait`` writes its one object, then ends the
        body in a separate write that a busy daemon may send tens of ms later; the docker CLI's
        decoder does not wait for it either). An empty body is ``{}``. The connection is not
        reusable afterwards."""
        from dockyard.jsonlite import loads

        if "chunked" not in resp.headers.get("transfer-encoding", "").lower():
            raw = self.body(resp, "POST")
            return loads(raw) if raw.strip() else {}
        self.reusable = False
        data = b""
        while True:
            chunk = self._chunk()
            if chunk is None:
                return loads(data) if data.strip() else {}
            data += chunk
            try:
                return loads(data)
            except ValueError:  # not complete yet
                continue

    def request(self, method: str, target: str, body: bytes | None = None) -> tuple[Response, bytes]:
        """Send one request and read its whole answer."""
        self.send(method, target, body)
        resp = self.head()
        return resp, self.body(resp, method)

    # ------------------------------------------------------------------ raw stream
    def recv(self, n: int = _CHUNK) -> bytes:
        """The next bytes of the connection (buffered ones first); b'' at its end. After an
        upgrade, the raw stream."""
        if self._buf:
            out, self._buf = self._buf[:n], self._buf[n:]
            return out
        try:
            return self.sock.recv(n)
        except OSError:  # a reset ends the stream as a close does
            return b""

    def close_write(self) -> None:
        """Half-close: the peer sees the end of what we send and keeps sending. On a TLS socket
        this is the plain socket's ``shutdown`` (``SSLSocket.shutdown`` would drop TLS), as
        ``dockyard.client.hijack.Hijacked.close_write`` does."""
        import _socket

        try:
            if isinstance(self.sock, _socket.socket):
                _socket.socket.shutdown(self.sock, _socket.SHUT_WR)
            else:
                self.sock.shutdown(_socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # ------------------------------------------------------------------ helpers
    def _fill(self) -> None:
        chunk = self.sock.recv(_CHUNK)
        if not chunk:
            raise WireError("the daemon closed the connection in the middle of an answer")
        self._buf += chunk

    def _exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill()
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def _line(self) -> bytes:
        while (i := self._buf.find(b"\r\n")) < 0:
            if len(self._buf) > _MAX_HEAD:
                raise WireError("a chunk header without an end")
            self._fill()
        out, self._buf = self._buf[:i], self._buf[i + 2:]
        return out

    def _chunked(self) -> bytes:
        out = []
        while (chunk := self._chunk()) is not None:
            out.append(chunk)
        while self._line():  # trailers, up to the blank line
            pass
        return b"".join(out)

    def _chunk(self) -> bytes | None:
        """One chunk of a chunked body; None for the last (zero-size) one."""
        size_text = self._line().split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise WireError(f"bad chunk size {size_text[:20]!r}") from None
        if size == 0:
            return None
        data = self._exactly(size)
        if self._exactly(2) != b"\r\n":
            raise WireError("a chunk without its CRLF")
        return data
