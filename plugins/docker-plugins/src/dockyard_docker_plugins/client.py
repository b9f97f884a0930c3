"""Finding Docker plugins by name, and calling them: Docker's plugin API v1 wire rules.

Discovery is dockerd's (moby ``pkg/plugins/discovery.go``), first hit wins: a unix socket
``<dir>/NAME.sock`` or ``<dir>/NAME/NAME.sock`` in each socket directory
(``/run/docker/plugins``), then ``NAME.spec`` (one line: ``unix:///path`` or ``tcp://H:P``) or
``NAME.json`` (``{"Name", "Addr", "TLSConfig": {"InsecureSkipVerify", "CAFile", "CertFile",
"KeyFile"}}``) in each spec directory (``/etc/docker/plugins``, ``/usr/lib/docker/plugins``).

Calls are ``POST /<Interface>.<Method>`` with a JSON body, ``Accept`` the vendor type
``application/vnd.docker.plugins.v1.2+json``. As dockerd's client: a call that cannot reach
the plugin (no socket, refused, reset before an answer) is tried again after 1, 2, 4, 8...
seconds until the next wait would end past the retry window (30 s); a non-200 answer is an
error carrying the body's ``Err`` (or the body); a 200 whose JSON holds a non-empty ``Err`` is
the plugin's refusal. Unlike dockerd's legacy client, every call also has a timeout (a hung
plugin must not hang the daemon). Every error names the plugin and the method.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound, Unavailable

log = logging.getLogger(__name__)

#: The content type dockerd sends (moby ``pkg/plugins/transport.VersionMimetype``).
VERSION_MIMETYPE = "application/vnd.docker.plugins.v1.2+json"
SOCKET_DIRS = ("/run/docker/plugins",)
SPEC_DIRS = ("/etc/docker/plugins", "/usr/lib/docker/plugins")
RETRY_WINDOW = 30.0  # dockerd's defaultTimeOut: connection retries stop after it
CALL_TIMEOUT = 60.0  # dockerd's volume driver "short" timeout; long calls get twice as much
_VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # dockerd's plugin name rule (validName)


class PluginFailed(DockyardError):
    """A Docker plugin could not be reached, timed out, or answered garbage or an error.
    The message names the plugin and the call; the API front answers 500, as dockerd."""


class PluginNotFound(PluginFailed, NotFound):
    """The plugin's ``Err`` says the object does not exist."""


class PluginConflict(PluginFailed, Conflict):
    """The plugin's ``Err`` says the object exists or is in use."""


class PluginInvalid(PluginFailed, InvalidArgument):
    """The plugin's ``Err`` says the request is invalid."""


def refusal(message: str, err: str) -> PluginFailed:
    """A plugin's ``Err`` as a typed error. The protocol has only a string; dockerd reads
    "no such volume" / "not found" the same way (moby ``volume/service`` ``isNotExist``), and
    the kits expect the types: not found, exists or in use, invalid."""
    low = err.lower()
    if any(w in low for w in ("no such", "not found", "does not exist", "doesn't exist")):
        return PluginNotFound(message)
    if any(w in low for w in ("in use", "already exists", "busy", "conflict")):
        return PluginConflict(message)
    if any(w in low for w in ("invalid", "unknown option", "not supported", "unsupported", "bad request")):
        return PluginInvalid(message)
    return PluginFailed(message)


@dataclass(frozen=True)
class TlsConfig:
    insecure_skip_verify: bool = False
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""

    def context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file or None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if self.insecure_skip_verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        if self.cert_file:
            ctx.load_cert_chain(self.cert_file, self.key_file or None)
        return ctx


@dataclass(frozen=True)
class Found:
    """Where plugin ``name`` is: ``address`` is ``unix:///path``, ``tcp://H:P`` or
    ``http(s)://H:P``; ``spec`` the file it came from (None for a socket)."""

    name: str
    address: str
    spec: str | None = None
    tls: TlsConfig | None = None


@dataclass
class Discovery:
    socket_dirs: tuple[str, ...] = SOCKET_DIRS
    spec_dirs: tuple[str, ...] = SPEC_DIRS

    def where(self) -> str:
        return ", ".join([*self.socket_dirs, *self.spec_dirs])

    def find(self, name: str) -> Found | None:
        """Plugin ``name``'s address, or None. A spec file that cannot be read or parsed is
        an error naming the file (dockerd refuses it too)."""
        if not _VALID_NAME.fullmatch(name):
            return None
        for d in self.socket_dirs:
            for path in (Path(d) / f"{name}.sock", Path(d) / name / f"{name}.sock"):
                if path.is_socket():
                    return Found(name, f"unix://{path}")
        for d in self.spec_dirs:
            for ext in (".spec", ".json"):
                path = Path(d) / f"{name}{ext}"
                if path.is_file():
                    return self._read_spec(name, path)
        return None

    def names(self) -> list[str]:
        """Every plugin name found in the directories (for listings)."""
        out: set[str] = set()
        for d in self.socket_dirs:
            base = Path(d)
            if not base.is_dir():
                continue
            for p in base.iterdir():
                if p.suffix == ".sock" and p.is_socket():
                    out.add(p.stem)
                elif p.is_dir() and (p / f"{p.name}.sock").is_socket():
                    out.add(p.name)
        for d in self.spec_dirs:
            base = Path(d)
            if base.is_dir():
                out.update(p.stem for p in base.iterdir() if p.suffix in (".spec", ".json") and p.is_file())
        return sorted(n for n in out if _VALID_NAME.fullmatch(n))

    @staticmethod
    def _read_spec(name: str, path: Path) -> Found:
        try:
            text = path.read_text()
        except OSError as exc:
            raise Unavailable(f"plugin {name}: cannot read {path}: {exc.strerror}") from exc
        tls = None
        if path.suffix == ".json":
            try:
                doc = json.loads(text)
                addr = str(doc.get("Addr") or "")
                tc = doc.get("TLSConfig")
                if isinstance(tc, dict):
                    tls = TlsConfig(bool(tc.get("InsecureSkipVerify")), str(tc.get("CAFile") or ""),
                                    str(tc.get("CertFile") or ""), str(tc.get("KeyFile") or ""))
            except (ValueError, AttributeError) as exc:
                raise Unavailable(f"plugin {name}: {path} is not a plugin spec: {exc}") from exc
        else:
            addr = text.strip()
        parts = urlsplit(addr)
        if parts.scheme not in ("unix", "tcp", "http", "https") or not (parts.netloc or parts.path):
            raise Unavailable(f"plugin {name}: {path}: unsupported address {addr!r} "
                              "(unix:///path, tcp://HOST:PORT or https://HOST:PORT)")
        if parts.scheme == "unix" and (parts.netloc or not parts.path.startswith("/")):
            raise Unavailable(f"plugin {name}: {path}: a unix socket address must be absolute: {addr!r}")
        return Found(name, addr, str(path), tls)


@dataclass
class PluginClient:
    """One plugin's connection: activation (``Implements``), calls, retries and timeouts."""

    found: Found
    retry_window: float = RETRY_WINDOW
    timeout: float = CALL_TIMEOUT
    implements: tuple[str, ...] | None = None  # after activation
    _activating: asyncio.Lock | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return self.found.name

    def _base(self) -> tuple[str, aiohttp.BaseConnector]:
        parts = urlsplit(self.found.address)
        if parts.scheme == "unix":
            return "http://plugin.moby.localhost", aiohttp.UnixConnector(path=parts.path)
        tls = self.found.tls
        if parts.scheme == "https" or tls is not None:
            ctx = (tls or TlsConfig()).context()
            return f"https://{parts.netloc}", aiohttp.TCPConnector(ssl=ctx)
        return f"http://{parts.netloc}", aiohttp.TCPConnector()

    async def activate(self) -> tuple[str, ...]:
        """``POST /Plugin.Activate`` once (again after a failure); the ``Implements`` list."""
        if self.implements is not None:
            return self.implements
        if self._activating is None:
            self._activating = asyncio.Lock()
        async with self._activating:
            if self.implements is None:
                reply = await self.call("Plugin.Activate", None)
                impl = reply.get("Implements")
                if not isinstance(impl, list) or not all(isinstance(i, str) for i in impl):
                    raise PluginFailed(f"plugin {self.name}: Plugin.Activate answered no Implements list: "
                                       f"{_short(reply)}")
                self.implements = tuple(impl)
        return self.implements

    async def call(self, method: str, body: dict[str, Any] | None, *, optional: bool = False,
                   long: bool = False, check_err: bool = True) -> dict[str, Any]:
        """Call ``method`` (``VolumeDriver.Mount``) and return the decoded reply.

        ``optional``: a 404 (the plugin does not implement it) returns ``{}``.
        ``check_err``: a non-empty ``Err`` in the reply raises :class:`PluginFailed`.
        """
        data = b"" if body is None else json.dumps(body).encode()
        start = time.monotonic()
        retries = 0
        while True:
            try:
                status, raw = await self._post(method, data, self.timeout * (2 if long else 1))
                break
            except TimeoutError as exc:  # before OSError, its base class
                raise PluginFailed(f"plugin {self.name}: {method} timed out after "
                                   f"{self.timeout * (2 if long else 1):g}s") from exc
            except (aiohttp.ClientConnectionError, OSError) as exc:
                if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError) and data:
                    # the plugin took the request and went away: not repeated blindly, as a
                    # create may have happened (dockerd's http.Client does not repeat POSTs)
                    raise PluginFailed(f"plugin {self.name}: {method}: the connection closed before an "
                                       f"answer ({exc})") from exc
                wait = min(2.0 ** retries, RETRY_WINDOW)
                if time.monotonic() - start + wait >= self.retry_window:
                    raise PluginFailed(f"plugin {self.name} is not reachable at {self.found.address} "
                                       f"({method}): {_reason(exc)}") from exc
                retries += 1
                log.warning("Unable to connect to plugin %s (%s): %s, retrying in %.0fs",
                            self.name, method, _reason(exc), wait)
                await asyncio.sleep(wait)
        if status == 404 and optional:
            return {}
        try:
            reply = json.loads(raw) if raw.strip() else {}
        except ValueError:
            reply = None
        if status != 200:
            err = reply.get("Err") if isinstance(reply, dict) else ""
            text = err or raw.decode(errors="replace").strip()[:200] or f"HTTP {status}"
            if status == 404 and not err:
                raise PluginFailed(f"plugin {self.name} does not implement {method}: {text}")
            raise refusal(f"plugin {self.name}: {method} failed (HTTP {status}): {text}", text)
        if not isinstance(reply, dict):
            raise PluginFailed(f"plugin {self.name}: {method} answered invalid JSON: "
                               f"{raw.decode(errors='replace')[:120]!r}")
        if check_err and reply.get("Err"):
            raise refusal(f"plugin {self.name}: {method}: {reply['Err']}", str(reply["Err"]))
        return reply

    async def _post(self, method: str, data: bytes, timeout: float) -> tuple[int, bytes]:
        """One try. A session per call: nothing to close at shutdown, and a plugin restarted
        on a new socket is reached by the next call (a unix connect costs microseconds)."""
        base, connector = self._base()
        async with asyncio.timeout(timeout), aiohttp.ClientSession(connector=connector) as session:
            async with session.post(f"{base}/{method}", data=data,
                                    headers={"Accept": VERSION_MIMETYPE, "Content-Type": VERSION_MIMETYPE}) as resp:
                return resp.status, await resp.read()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError) or "No such file" in str(exc):
        return "the socket does not exist"
    return str(exc) or type(exc).__name__


def _short(doc: Any) -> str:
    text = json.dumps(doc)
    return text if len(text) < 120 else text[:117] + "..."


def not_found(name: str, discovery: Discovery) -> NotFound:
    return NotFound(f'plugin "{name}" not found (no socket or spec file in {discovery.where()})')
