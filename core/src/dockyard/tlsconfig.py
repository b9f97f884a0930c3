"""TLS on dockyardd's TCP listeners, set up as dockerd sets it up.

The settings are dockerd's flags and ``daemon.json`` keys: ``tls``, ``tlsverify``, ``tlscacert``,
``tlscert``, ``tlskey`` (``cmd/dockerd/options.go``, ``daemon/command/daemon.go``):

* ``tlsverify`` given at all, true or false, turns TLS on; true (the default once TLS is on,
  so plain ``--tls`` too) requires every client to present a certificate signed by
  ``tlscacert``, and trusts no other CA; ``--tlsverify=false`` is TLS without client
  certificates (the server is still authenticated);
* ``tls: false`` given explicitly, without ``tlsverify``, is plain HTTP on TCP;
* the files default to ``ca.pem``, ``cert.pem`` and ``key.pem`` in ``$DOCKER_CERT_PATH``, else
  ``$DOCKER_CONFIG``, else ``~/.docker`` (dockerd's leftover from sharing a binary with the CLI);
* TLS applies to every ``tcp://`` listener, never to a unix socket; TLS 1.2 at least.

Where dockyardd is stricter than dockerd 28: plain TCP on an address that is not loopback is
refused unless ``tls: false`` was given explicitly. dockerd 28 warns, sleeps 16 seconds and
serves (its "[DEPRECATION NOTICE] In future versions this will be a hard failure"); dockyardd
is that future. Plain TCP on 127.0.0.1, ``::1`` or ``localhost`` stays allowed, with dockerd's
warning. One thing dockyardd does not copy: dockerd also reads ``DOCKER_TLS_VERIFY`` from its own
environment as the default of ``--tlsverify``, so a shell set up for the CLI changes the daemon.

``ssl`` is imported only when a context is built.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    import ssl

    from dockyard.config import Config
    from dockyard.server import Listener

DEFAULT_CA, DEFAULT_CERT, DEFAULT_KEY = "ca.pem", "cert.pem", "key.pem"

#: dockerd's warnings for TCP without client verification (``loadListeners``), verbatim.
INSECURE = ("Binding to IP address without --tlsverify is insecure and gives root access on this "
            "machine to everyone who has access to your network.")
BROWSER = ("Binding to an IP address, even on localhost, can also give access to scripts run in a "
           "browser. Be safe out there!")


def default_cert_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where dockerd looks for its TLS files when no path is given."""
    env = os.environ if env is None else env
    if env.get("DOCKER_CERT_PATH"):
        return Path(env["DOCKER_CERT_PATH"])
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"])
    return Path(env.get("HOME") or os.path.expanduser("~")) / ".docker"


def parse_bool(text: str) -> bool:
    """A flag value as Go's ``strconv.ParseBool`` reads it (``--tls=false``, ``--tlsverify=1``)."""
    if text in ("1", "t", "T", "true", "TRUE", "True"):
        return True
    if text in ("0", "f", "F", "false", "FALSE", "False"):
        return False
    raise ValueError(f"invalid boolean value {text!r}")


@dataclass(frozen=True)
class ServerTLS:
    """The TLS of the daemon's TCP listeners, resolved from the configuration."""

    enabled: bool = False
    verify: bool = False
    ca: str = ""
    cert: str = ""
    key: str = ""
    #: ``tls: false`` was given explicitly (dockerd's opt-in to plain TCP off loopback).
    explicitly_off: bool = False

    @classmethod
    def from_config(cls, config: Config, env: Mapping[str, str] | None = None) -> ServerTLS:
        values: Mapping[str, Any] = config.values
        tls, verify = values.get("tls"), values.get("tlsverify")
        if verify is not None:  # "if they specify TLSVerify at all then we need to turn on TLS"
            tls = True
        if not tls:
            return cls(explicitly_off=tls is False)
        where = default_cert_dir(env)
        return cls(enabled=True, verify=verify is not False,
                   ca=str(values.get("tlscacert") or where / DEFAULT_CA),
                   cert=str(values.get("tlscert") or where / DEFAULT_CERT),
                   key=str(values.get("tlskey") or where / DEFAULT_KEY))

    def describe(self) -> str:
        if not self.enabled:
            return "plain HTTP"
        return f"TLS, client certificates verified against {self.ca}" if self.verify else \
            "TLS, client certificates not verified"

    def context(self) -> ssl.SSLContext:
        """The server context: this certificate, TLS 1.2 at least, and with ``verify`` a client
        certificate signed by the CA file required (no system CA is trusted).

        Raises :class:`InvalidArgument` naming the file that cannot be used.
        """
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_alpn_protocols(["http/1.1"])
        try:
            ctx.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            raise InvalidArgument(f"invalid TLS configuration: could not load X509 key pair (cert: "
                                  f"{self.cert!r}, key: {self.key!r}): {_reason(exc)}") from exc
        if self.verify:
            try:
                ctx.load_verify_locations(cafile=self.ca)
            except (OSError, ssl.SSLError) as exc:
                raise InvalidArgument(f"invalid TLS configuration: could not read CA certificate "
                                      f"{self.ca!r}: {_reason(exc)}") from exc
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


def _reason(exc: OSError) -> str:
    reason = getattr(exc, "reason", None)  # ssl.SSLError: KEY_VALUES_MISMATCH, PEM_LIB...
    return str(reason) if reason else (exc.strerror or str(exc))


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an IP literal or a name) is only reachable from this machine. A name is
    loopback when every address it resolves to is; one that does not resolve is not."""
    if host == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except OSError:
            return False
        return bool(infos) and all(is_loopback(str(info[4][0])) for info in infos)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


def check_listeners(listeners: Iterable[Listener], tls: ServerTLS) -> list[str]:
    """The warnings to log for ``listeners`` under ``tls``; raises :class:`InvalidArgument` for a
    plain TCP listener off loopback unless TLS was explicitly turned off."""
    warnings: list[str] = []
    for lst in listeners:
        if lst.kind != "tcp" or (tls.enabled and tls.verify):
            continue
        where = f"tcp://{_hostport(lst.address, lst.port)}"
        loopback = is_loopback(lst.address)
        if not tls.enabled and not loopback and not tls.explicitly_off:
            raise InvalidArgument(
                f"refusing to listen on {where} without TLS: {INSECURE[:-1]}. Listen with mutual TLS "
                "(--tlsverify --tlscacert CA --tlscert CERT --tlskey KEY, or the same keys in "
                "daemon.json), or explicitly specify '--tls=false' (\"tls\": false in daemon.json) to "
                "listen without TLS anyway")
        warnings.append(f"{INSECURE} host={where}")
        if loopback:
            warnings.append(f"{BROWSER} host={where}")
        elif not tls.enabled:
            warnings.append(f"listening on {where} without TLS because TLS was explicitly disabled "
                            "(--tls=false): anyone who can reach it controls this machine")
    return warnings


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
