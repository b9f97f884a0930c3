"""Where the daemon is and how to reach it: the one address resolution of every dockyard client
(our CLI, compose, the builder and distribution commands).

Order: an explicit address (``-H``) → ``DOCKYARD_HOST`` → ``DOCKER_HOST`` → dockyardd's socket
:data:`DEFAULT_HOST`. TLS is read from the environment exactly as the docker CLI reads it
(``cli/flags/options.go``, ``cli/context/docker/load.go``):

* ``DOCKER_TLS_VERIFY`` non-empty (any value, ``0`` too) means TLS and verifying the daemon's
  certificate — against ``ca.pem`` only (docker's pool holds just that CA, not the system's) and
  the address's host name, TLS 1.2 at least; ``DOCKER_TLS`` non-empty means TLS without
  verification;
* the files are ``ca.pem``, ``cert.pem`` and ``key.pem`` in ``DOCKER_CERT_PATH``, by default the
  docker config directory (``DOCKER_CONFIG``, else ``~/.docker``); a missing ``cert.pem`` or
  ``key.pem`` means no client certificate, as with docker;
* TLS applies to a ``tcp://`` address, wherever it came from (docker applies it to ``-H`` too),
  and makes it ``https``; a ``tcp://`` address without a port gets 2376 with TLS, 2375 without.

Two deliberate differences: docker falls back to ``tcp://localhost:2376`` when TLS is on and no
host is given anywhere, dockyard to its own socket; and docker gives a port-less ``tcp://host``
2375 even with TLS (``opts.ParseTCPAddr``), dockyard the IANA TLS port 2376.

``ssl`` is imported only to connect with TLS.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from dockyard import errors as e
from dockyard.client.errors import ConnectionFailed, TlsFailed

if TYPE_CHECKING:
    import ssl

DEFAULT_HOST = "unix:///run/dockyard/dockyard.sock"
HTTP_PORT = 2375
TLS_PORT = 2376


@dataclass(frozen=True)
class TlsFiles:
    """The TLS files of a client: the CA that signed the daemon's certificate, and the client's
    own certificate and key (both None: no client certificate)."""

    ca: str
    cert: str | None = None
    key: str | None = None

    @classmethod
    def from_dir(cls, directory: str) -> TlsFiles:
        """``ca.pem``, ``cert.pem``, ``key.pem`` in ``directory``; the client pair only when both
        files exist (docker drops a default file that does not exist, and a pair with a part
        missing means no client certificate)."""
        cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
        pair = os.path.exists(cert) and os.path.exists(key)
        return cls(ca=os.path.join(directory, "ca.pem"), cert=cert if pair else None,
                   key=key if pair else None)


@dataclass(frozen=True)
class DaemonAddress:
    """A resolved daemon address.

    ``url`` is ``unix:///path``, ``http://host:port`` or ``https://host:port`` (TLS); ``given``
    is the address as written (``tcp://host``), used in messages; ``source`` says where it came
    from: ``-H``, ``DOCKYARD_HOST``, ``DOCKER_HOST`` or ``default``.
    """

    url: str
    tls: TlsFiles | None = None
    verify: bool = False
    given: str = ""
    source: str = "default"

    @classmethod
    def parse(cls, text: str, tls: TlsFiles | None = None, verify: bool = False,
              source: str = "-H") -> DaemonAddress:
        """Parse ``unix:///path``, ``tcp://host[:port]`` (``http://`` is accepted as ``tcp://``),
        ``npipe:////./pipe/NAME`` (a Windows named pipe, :mod:`dockyard.npipe`), or, like docker,
        a bare ``/path`` (unix) or ``host:port`` (tcp). ``tls`` applies only to a TCP address."""
        given = text.strip()
        if given.lower().startswith("npipe:"):  # Windows named pipe (connects on Windows only)
            from dockyard import npipe

            return cls(url=npipe.address(npipe.parse(given)), given=given, source=source)
        scheme, sep, rest = given.partition("://")
        if not sep:
            scheme, rest = ("unix" if given.startswith(("/", "./")) else "tcp"), given
        if scheme == "unix":
            if not rest or "://" in rest:
                raise e.InvalidArgument(f"invalid host {text!r}: expected unix:///path/to/socket")
            return cls(url=f"unix://{rest}", given=given, source=source)
        if scheme not in ("tcp", "http"):
            raise e.InvalidArgument(f"invalid host {text!r}: expected unix:///path or tcp://host:port")
        parts = urlsplit(f"tcp://{rest}")
        try:
            port = parts.port
        except ValueError as exc:
            raise e.InvalidArgument(f"invalid host {text!r}: {exc}") from exc
        if parts.path not in ("", "/") or parts.query or parts.username:
            raise e.InvalidArgument(f"invalid host {text!r}: expected tcp://host:port")
        host = parts.hostname or "localhost"
        netloc = f"[{host}]" if ":" in host else host
        port = port or (TLS_PORT if tls is not None else HTTP_PORT)
        return cls(url=f"{'https' if tls is not None else 'http'}://{netloc}:{port}", tls=tls,
                   verify=verify and tls is not None, given=given, source=source)

    def __str__(self) -> str:
        return self.given or self.url

    @property
    def scheme(self) -> str:
        """``unix``, ``http``, ``https`` or ``npipe``."""
        return self.url.partition("://")[0]

    @property
    def path(self) -> str:
        """The socket path of a ``unix://`` address; the Windows pipe path (``\\\\.\\pipe\\NAME``)
        of an ``npipe://`` one."""
        rest = self.url.partition("://")[2]
        return rest.replace("/", "\\") if self.scheme == "npipe" else rest

    @property
    def hostname(self) -> str:
        """The host of a TCP address (``localhost`` for a unix socket: the HTTP ``Host``)."""
        if self.scheme in ("unix", "npipe"):
            return "localhost"
        return urlsplit(self.url).hostname or "localhost"

    @property
    def port(self) -> int:
        """The port of a TCP address (0 for a unix socket or a named pipe)."""
        if self.scheme in ("unix", "npipe"):
            return 0
        return urlsplit(self.url).port or HTTP_PORT

    def connect(self, timeout: float | None) -> socket.socket:
        """A connected stream socket (TLS-wrapped for ``https``) with ``timeout`` set.

        Raises :class:`ConnectionFailed` when the daemon cannot be reached, :class:`TlsFailed`
        when the TLS files are unusable or the handshake fails (a wrong CA, a host name the
        certificate does not name).
        """
        if self.scheme == "npipe":
            from dockyard import npipe

            try:
                return npipe.PipeSocket(self.path)  # type: ignore[return-value]
            except e.Unavailable as exc:
                raise ConnectionFailed(f"cannot connect to the dockyard daemon at {self}: {exc}") from exc
            except OSError as exc:
                raise ConnectionFailed(f"cannot connect to the dockyard daemon at {self}: {exc}. "
                                       "Is dockyardd running?") from exc
        try:
            if self.scheme == "unix":
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.settimeout(timeout)
                    sock.connect(self.path)
                except BaseException:
                    sock.close()
                    raise
                return sock
            sock = socket.create_connection((self.hostname, self.port), timeout)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise ConnectionFailed(f"cannot connect to the dockyard daemon at {self}: {exc.strerror}. "
                                   "Is dockyardd running?") from exc
        except OSError as exc:
            raise ConnectionFailed(f"cannot connect to the dockyard daemon at {self}: {exc}") from exc
        if self.tls is None:
            return sock
        import ssl

        try:
            return self.ssl_context.wrap_socket(sock, server_hostname=self.hostname)
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise TlsFailed(f"TLS handshake with the daemon at {self} failed: certificate verify failed: "
                            f"{exc.verify_message} (the daemon's certificate was checked against the CA "
                            f"in {self.tls.ca})") from exc
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise TlsFailed(f"TLS handshake with the daemon at {self} failed: {exc}") from exc
        except BaseException:
            sock.close()
            raise

    @cached_property
    def ssl_context(self) -> ssl.SSLContext:
        """The client context docker builds (``tlsconfig.ClientDefault`` plus the endpoint's
        files): TLS 1.2 at least; with ``verify``, ``ca.pem`` as the only trusted root and the
        host name checked; the client certificate when there is one."""
        import ssl

        if self.tls is None:
            raise TlsFailed(f"{self} is not a TLS address")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.verify:
            try:
                ctx.load_verify_locations(cafile=self.tls.ca)
            except (OSError, ssl.SSLError) as exc:
                raise TlsFailed(f"could not read CA certificate {self.tls.ca!r}: "
                                f"{getattr(exc, 'strerror', None) or exc}") from exc
        else:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.tls.cert and self.tls.key:
            try:
                ctx.load_cert_chain(self.tls.cert, self.tls.key)
            except (OSError, ssl.SSLError) as exc:
                raise TlsFailed(f"could not load the client certificate {self.tls.cert!r} and key "
                                f"{self.tls.key!r}: {getattr(exc, 'strerror', None) or exc}") from exc
        return ctx


def tls_from_env(env: Mapping[str, str]) -> tuple[TlsFiles | None, bool]:
    """``(files, verify)`` from ``DOCKER_TLS_VERIFY``, ``DOCKER_TLS``, ``DOCKER_CERT_PATH`` and
    ``DOCKER_CONFIG``, as the docker CLI reads them; ``(None, False)`` without TLS."""
    verify = bool(env.get("DOCKER_TLS_VERIFY"))
    if not verify and not env.get("DOCKER_TLS"):
        return None, False
    directory = (env.get("DOCKER_CERT_PATH") or env.get("DOCKER_CONFIG")
                 or os.path.join(os.path.expanduser("~"), ".docker"))
    return TlsFiles.from_dir(directory), verify


def resolve_address(explicit: str | None = None, env: Mapping[str, str] | None = None) -> DaemonAddress:
    """The daemon to talk to: ``explicit`` (``-H``), else ``DOCKYARD_HOST``, else ``DOCKER_HOST``,
    else :data:`DEFAULT_HOST`; TLS from the environment (see the module docstring)."""
    env = os.environ if env is None else env
    candidates = (("-H", explicit), ("DOCKYARD_HOST", env.get("DOCKYARD_HOST")),
                  ("DOCKER_HOST", env.get("DOCKER_HOST")))
    source, value = next(((src, v) for src, v in candidates if v and v.strip()), ("default", DEFAULT_HOST))
    tls, verify = tls_from_env(env)
    return DaemonAddress.parse(value, tls=tls, verify=verify, source=source)
