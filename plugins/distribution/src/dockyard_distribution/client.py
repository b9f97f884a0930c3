"""An OCI distribution-spec client over aiohttp: manifests, blobs (with resume), uploads, auth.

One :class:`RegistryClient` talks to one registry host for one set of credentials. It finds
the endpoint like dockerd does (HTTPS first; plain HTTP only for an insecure registry), answers
``401`` challenges (bearer token or basic) once per scope, and verifies every byte it hands
back against the digest it was asked for.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode, urljoin, urlparse

import aiohttp

from dockyard.content import DigestMismatch, validate_digest
from dockyard.errors import DockyardError, Forbidden, InvalidArgument, NotFound, Unavailable
from dockyard_distribution import __version__
from dockyard_distribution.auth import AuthConfig, Challenge, parse_challenges, scope_for
from dockyard_distribution.mediatypes import ACCEPT, detect_media_type

log = logging.getLogger(__name__)

USER_AGENT = f"dockyard/{__version__} (linux) aiohttp/{aiohttp.__version__}"
DEFAULT_INSECURE = ("127.0.0.0/8", "::1/128")
_READ_CHUNK = 1 << 20

Progress = Callable[[int], None]


class RegistryError(DockyardError):
    """The registry answered with an error we do not map to a more specific type."""

    def __init__(self, message: str, status: int = 0, code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class Unauthorized(Forbidden):
    """The registry refused the credentials (or asked for some we do not have)."""


class RegistryUnreachable(Unavailable):
    """The connection to the registry failed (refused, reset, timed out)."""


class TransferInterrupted(Unavailable):
    """A blob transfer failed after every retry."""


@dataclass
class RegistryOptions:
    """How to reach registries: TLS material, insecure hosts, limits and retries."""

    insecure_registries: list[str] = field(default_factory=list)  # host[:port] or CIDR
    certs_dir: Path | None = None  # <certs_dir>/<host:port>/{ca.crt,*.crt,*.cert,*.key}
    loopback_insecure: bool = True  # dockerd treats 127.0.0.0/8 as insecure by default
    max_concurrent_downloads: int = 3
    max_concurrent_uploads: int = 5
    retries: int = 5
    retry_delay: float = 0.2
    chunk_size: int = 0  # push: 0 = monolithic PUT; else PATCH chunks of this size
    timeout: float = 300.0  # seconds without progress before a request is given up
    mirrors: list[str] = field(default_factory=list)  # registry-mirrors: docker.io pulls try these first
    hub_host: str = "registry-1.docker.io"  # where docker.io's API lives (tests point it at a fake)


@dataclass(frozen=True)
class Endpoint:
    url: str  # "https://host:port"
    ssl: ssl.SSLContext | bool


@dataclass
class Manifest:
    body: bytes
    media_type: str
    digest: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.body)


def _error_text(body: bytes) -> tuple[str, str]:
    """(code, "manifest unknown: manifest unknown") from a registry error body."""
    try:
        errs = json.loads(body).get("errors") or []
    except (ValueError, AttributeError):
        errs = []
    if errs and isinstance(errs[0], dict):
        code = str(errs[0].get("code") or "")
        msg = str(errs[0].get("message") or "")
        return code, f"{code.lower().replace('_', ' ')}: {msg}" if code else msg
    text = body.decode(errors="replace").strip()
    return "", text[:200]


def is_insecure(host: str, options: RegistryOptions) -> bool:
    """Whether ``host`` (``name[:port]``) may be reached over plain HTTP / unverified TLS.

    Listed as ``host[:port]``, or its address (resolved like dockerd does) inside a listed
    CIDR; 127.0.0.0/8 and ::1 count when ``loopback_insecure``.
    """
    entries = list(options.insecure_registries)
    if options.loopback_insecure:
        entries += list(DEFAULT_INSECURE)
    name = host_name(host)
    nets = []
    for entry in entries:
        entry = entry.strip()
        if entry.removeprefix("http://").removeprefix("https://").rstrip("/") in (host, name):
            return True
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.ip_network(entry, strict=False))
    if not nets:
        return False
    try:
        addrs = [ipaddress.ip_address(name)]
    except ValueError:
        try:
            addrs = [ipaddress.ip_address(i[4][0]) for i in socket.getaddrinfo(name, None)]
        except (OSError, UnicodeError):
            return False
    return any(a in n for a in addrs for n in nets)


def host_name(host: str) -> str:
    """The host part of ``name[:port]`` / ``[v6]:port``."""
    if host.startswith("["):
        return host[1:host.index("]")]
    if host.count(":") == 1:
        return host.split(":", 1)[0]
    return host


def tls_context(host: str, options: RegistryOptions, verify: bool) -> ssl.SSLContext:
    """TLS for ``host``: system CAs plus ``<certs_dir>/<host>/*.crt``, client ``*.cert``/``*.key``
    pairs (docker's certs.d layout); no verification when ``verify`` is false."""
    ctx = ssl.create_default_context()
    d = options.certs_dir / host if options.certs_dir else None
    if d is not None and d.is_dir():
        for ca in sorted(d.glob("*.crt")):
            ctx.load_verify_locations(cafile=str(ca))
        for cert in sorted(d.glob("*.cert")):
            key = cert.with_suffix(".key")
            if not key.exists():
                raise InvalidArgument(f"missing key {key.name} for client certificate {cert}")
            ctx.load_cert_chain(str(cert), str(key))
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class RegistryClient:
    """Requests to one registry host with one set of credentials. Use as an async context
    manager, or pass a shared ``session``."""

    def __init__(self, host: str, options: RegistryOptions | None = None, auth: AuthConfig | None = None,
                 session: aiohttp.ClientSession | None = None, base_url: str = "") -> None:
        self.host = host
        self.base_url = base_url.rstrip("/")  # a mirror: this scheme://host/prefix, no probing
        self.options = options or RegistryOptions()
        self.auth = auth
        self._session = session
        self._own_session = session is None
        self._endpoint: Endpoint | None = None
        self._endpoint_lock = asyncio.Lock()
        self._challenge: Challenge | None = None
        self._tokens: dict[str, tuple[str, float]] = {}  # scope -> (Authorization, expiry)
        self._token_locks: dict[str, asyncio.Lock] = {}
        self.download_slots = asyncio.Semaphore(max(1, self.options.max_concurrent_downloads))
        self.upload_slots = asyncio.Semaphore(max(1, self.options.max_concurrent_uploads))

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._own_session and self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=16, ttl_dns_cache=60),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=self.options.timeout),
                headers={"User-Agent": USER_AGENT}, auto_decompress=False)
        return self._session

    # ------------------------------------------------------------------ endpoint & auth
    async def endpoint(self) -> Endpoint:
        """Find how to reach the registry: ``GET /v2/`` over HTTPS, or HTTP when insecure."""
        async with self._endpoint_lock:
            if self._endpoint is None:
                self._endpoint = await self._probe()
            return self._endpoint

    async def _probe(self) -> Endpoint:
        insecure = is_insecure(self.host, self.options)
        if self.base_url.startswith("http://"):
            if not insecure:
                raise Unavailable(f"mirror {self.base_url}: plain HTTP is used only for loopback or a registry "
                                  f"listed in insecure-registries (list {self.host} there, or use https)")
            candidates = [Endpoint(self.base_url, False)]
        elif self.base_url:
            candidates = [Endpoint(self.base_url, tls_context(self.host, self.options, verify=not insecure))]
        else:
            candidates = [Endpoint(f"https://{self.host}", tls_context(self.host, self.options, verify=not insecure))]
        if insecure and not self.base_url:
            candidates.append(Endpoint(f"http://{self.host}", False))
        errors = []
        for ep in candidates:
            try:
                async with self.session.get(f"{ep.url}/v2/", ssl=ep.ssl,
                                            timeout=aiohttp.ClientTimeout(total=30)) as resp:
                    await resp.read()
                    if resp.status == 401:
                        self._challenge = _pick_challenge(resp.headers.getall("WWW-Authenticate", []))
                    elif resp.status >= 400 and resp.status != 404:
                        raise RegistryError(f"GET {ep.url}/v2/: HTTP {resp.status}", resp.status)
                    return ep
            except aiohttp.ClientConnectorCertificateError as exc:
                errors.append(f"{ep.url}: x509: {exc.certificate_error}")
            except (TimeoutError, aiohttp.ClientError, ssl.SSLError) as exc:
                errors.append(f"{ep.url}: {exc or type(exc).__name__}")
        hint = "" if insecure else (
            f" (for plain HTTP list {self.host} in insecure-registries; for a private CA put it in "
            f"{(self.options.certs_dir or Path('<data-root>/certs.d')) / self.host / 'ca.crt'})")
        raise Unavailable(f"cannot reach registry {self.host}: " + "; ".join(errors) + hint)

    async def _authorization(self, scope: str) -> str | None:
        hit = self._tokens.get(scope)
        if hit and hit[1] > time.monotonic():
            return hit[0]
        return None

    async def _authorize(self, scope: str, challenges: list[str]) -> None:
        """Answer a 401: fetch a bearer token for ``scope`` or use basic credentials."""
        ch = _pick_challenge(challenges) or self._challenge
        if ch is None:
            raise Unauthorized(f"{self.host}: unauthorized: authentication required (no challenge)")
        self._challenge = ch
        lock = self._token_locks.setdefault(scope, asyncio.Lock())
        async with lock:
            if await self._authorization(scope):
                return
            if ch.scheme == "basic":
                if self.auth is None or not self.auth.username:
                    raise Unauthorized(f"{self.host}: unauthorized: authentication required")
                value = "Basic " + base64.b64encode(
                    f"{self.auth.username}:{self.auth.password}".encode()).decode()
                self._tokens[scope] = (value, time.monotonic() + 3600 * 24)
                return
            if ch.scheme != "bearer" or not ch.params.get("realm"):
                raise Unauthorized(f"{self.host}: unsupported authentication challenge {ch.scheme!r}")
            token, ttl = await self._fetch_token(ch, scope)
            self._tokens[scope] = (f"Bearer {token}", time.monotonic() + max(10, ttl - 10))

    async def _fetch_token(self, ch: Challenge, scope: str) -> tuple[str, float]:
        realm = ch.params["realm"]
        scopes = [s for s in scope.split(" ") if s]
        service = ch.params.get("service", "")
        if self.auth is not None and self.auth.registrytoken:
            return self.auth.registrytoken, 60.0
        ssl_ = tls_context(urlparse(realm).netloc, self.options,
                           verify=not is_insecure(urlparse(realm).netloc, self.options)) \
            if realm.startswith("https:") else False
        if self.auth is not None and self.auth.identitytoken:
            form = {"grant_type": "refresh_token", "refresh_token": self.auth.identitytoken,
                    "service": service, "client_id": "dockyard", "scope": " ".join(scopes)}
            req = self.session.post(realm, data=form, ssl=ssl_)
        else:
            query = [("service", service)] if service else []
            query += [("scope", s) for s in scopes]
            query += [("account", self.auth.username)] if self.auth and self.auth.username else []
            hdrs = {}
            if self.auth is not None and self.auth.username:
                hdrs["Authorization"] = "Basic " + base64.b64encode(
                    f"{self.auth.username}:{self.auth.password}".encode()).decode()
            sep = "&" if "?" in realm else "?"
            req = self.session.get(realm + (sep + urlencode(query) if query else ""), headers=hdrs, ssl=ssl_)
        try:
            async with req as resp:
                body = await resp.read()
                if resp.status in (401, 403):
                    why = "incorrect username or password" if self.auth and not self.auth.empty \
                        else "authentication required"
                    raise Unauthorized(f"{self.host}: unauthorized: {why}")
                if resp.status >= 300:
                    raise RegistryError(f"token server {realm}: HTTP {resp.status}: {_error_text(body)[1]}",
                                        resp.status)
        except aiohttp.ClientError as exc:
            raise Unavailable(f"token server {realm}: {exc}") from exc
        try:
            data = json.loads(body)
            token = data.get("token") or data.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not token:
            raise RegistryError(f"token server {realm} returned no token")
        return str(token), float(data.get("expires_in") or 60)

    async def request(self, method: str, path: str, scope: str, *, headers: dict[str, str] | None = None,
                      data: Callable[[], Any] | None = None, allow_redirects: bool = True,
                      timeout: aiohttp.ClientTimeout | None = None) -> aiohttp.ClientResponse:
        """Send a request (``path`` relative to the endpoint, or an absolute URL), answering one
        401 challenge. ``data`` is a factory so the body can be sent again after a challenge.
        The caller must release the response."""
        ep = await self.endpoint()
        url = path if path.startswith(("http://", "https://")) else ep.url + path
        for attempt in range(2):
            hdrs = dict(headers or {})
            authz = await self._authorization(scope)
            if authz is None and attempt == 0 and self._challenge is not None and not self._anonymous_ok():
                await self._authorize(scope, [])
                authz = await self._authorization(scope)
            if authz:
                hdrs["Authorization"] = authz
            try:
                resp = await self.session.request(method, url, headers=hdrs, data=data() if data else None,
                                                  ssl=ep.ssl, allow_redirects=allow_redirects,
                                                  **({"timeout": timeout} if timeout else {}))
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                raise RegistryUnreachable(f"cannot reach registry {self.host}: {method} "
                                          f"{url.split('?')[0]}: {exc or type(exc).__name__}") from exc
            if resp.status != 401 or attempt == 1:
                if resp.status == 401:
                    body = await resp.read()
                    resp.release()
                    raise Unauthorized(f"{self.host}: unauthorized: {_error_text(body)[1] or 'authentication required'}")
                return resp
            challenges = resp.headers.getall("WWW-Authenticate", [])
            resp.release()
            self._tokens.pop(scope, None)
            await self._authorize(scope, challenges)
        raise AssertionError("unreachable")

    def _anonymous_ok(self) -> bool:
        # With credentials and a known challenge, authenticate up front (saves a round trip).
        return self.auth is None or self.auth.empty

    async def login(self) -> None:
        """Check the credentials: ``GET /v2/`` must succeed with them (bearer or basic)."""
        resp = await self.request("GET", "/v2/", scope="")
        try:
            if resp.status >= 300:
                body = await resp.read()
                raise RegistryError(f"login to {self.host} failed: HTTP {resp.status}: {_error_text(body)[1]}",
                                    resp.status)
        finally:
            resp.release()
        if (self._challenge is not None and not (await self._authorization(""))):
            # The registry allowed the anonymous ping; credentials still have to be right.
            await self._authorize("", [])

    # ------------------------------------------------------------------ manifests
    async def get_manifest(self, repo: str, reference: str, display: str = "") -> Manifest:
        """The manifest (or index) ``repo:reference``; digests are verified. A missing manifest
        is NotFound with dockerd's message."""
        display = display or f"{self.host}/{repo}:{reference}"
        resp = await self.request("GET", f"/v2/{repo}/manifests/{reference}", scope_for(repo, "pull"),
                                  headers={"Accept": ", ".join(ACCEPT)})
        try:
            body = await resp.read()
            if resp.status == 404:
                raise NotFound(f"manifest for {display} not found: {_error_text(body)[1] or 'manifest unknown'}")
            if resp.status >= 300:
                code, text = _error_text(body)
                if code in ("NAME_UNKNOWN", "MANIFEST_UNKNOWN"):
                    raise NotFound(f"manifest for {display} not found: {text}")
                raise RegistryError(f"manifest for {display}: HTTP {resp.status}: {text}", resp.status, code)
            header_digest = resp.headers.get("Docker-Content-Digest", "")
            content_type = resp.headers.get("Content-Type", "")
        finally:
            resp.release()
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if reference.startswith("sha256:") and actual != reference:
            raise DigestMismatch(reference, actual, f"manifest for {display}: registry served content "
                                 f"with digest {actual}, expected {reference}")
        if header_digest.startswith("sha256:") and header_digest != actual:
            raise DigestMismatch(header_digest, actual, f"manifest for {display}: content digest {actual} "
                                 f"does not match Docker-Content-Digest {header_digest}")
        return Manifest(body, detect_media_type(body, content_type), actual)

    async def list_tags(self, repo: str, display: str = "") -> list[str]:
        """Every tag of ``repo`` (following ``Link`` pagination); NotFound for an unknown repository."""
        tags: list[str] = []
        path: str | None = f"/v2/{repo}/tags/list?n=1000"
        while path:
            resp = await self.request("GET", path, scope_for(repo, "pull"))
            try:
                body = await resp.read()
                if resp.status == 404:
                    raise NotFound(f"repository {display or repo} not found: {_error_text(body)[1] or 'name unknown'}")
                if resp.status >= 300:
                    raise RegistryError(f"tags of {display or repo}: HTTP {resp.status}: {_error_text(body)[1]}",
                                        resp.status)
                tags += list(json.loads(body).get("tags") or [])
                link = resp.headers.get("Link", "")
                path = link.split(";")[0].strip().strip("<>") if 'rel="next"' in link else None
            finally:
                resp.release()
        return tags

    async def put_manifest(self, repo: str, reference: str, body: bytes, media_type: str) -> str:
        resp = await self.request("PUT", f"/v2/{repo}/manifests/{reference}", scope_for(repo, "pull,push"),
                                  headers={"Content-Type": media_type}, data=lambda: body)
        try:
            text = await resp.read()
            if resp.status not in (200, 201, 202):
                code, msg = _error_text(text)
                raise RegistryError(f"manifest upload to {self.host}/{repo}:{reference} failed: "
                                    f"HTTP {resp.status}: {msg}", resp.status, code)
            return resp.headers.get("Docker-Content-Digest") or ("sha256:" + hashlib.sha256(body).hexdigest())
        finally:
            resp.release()

    # ------------------------------------------------------------------ blobs: download
    async def get_blob_bytes(self, repo: str, digest: str, max_size: int = 64 << 20) -> bytes:
        """A small blob (a config) in memory, verified."""
        validate_digest(digest)
        resp = await self.request("GET", f"/v2/{repo}/blobs/{digest}", scope_for(repo, "pull"))
        try:
            if resp.status == 404:
                raise NotFound(f"blob {digest} not found in {self.host}/{repo}")
            if resp.status >= 300:
                raise RegistryError(f"blob {digest}: HTTP {resp.status}: {_error_text(await resp.read())[1]}",
                                    resp.status)
            body = await resp.content.read(max_size + 1)
        finally:
            resp.release()
        if len(body) > max_size:
            raise InvalidArgument(f"blob {digest} is larger than {max_size} bytes")
        actual = "sha256:" + hashlib.sha256(body).hexdigest()
        if actual != digest:
            raise DigestMismatch(digest, actual, f"blob from {self.host}/{repo} failed verification: "
                                 f"expected {digest}, got {actual}")
        return body

    async def download_blob(self, repo: str, digest: str, size: int | None, dest: Path | BlobSink,
                            progress: Progress | None = None) -> None:
        """Download blob ``digest`` into ``dest`` (a file created here, or a :class:`BlobSink`),
        resuming with ``Range`` after a dropped connection, and verify size and digest.

        Writes happen in a worker thread, one chunk in flight while the next is read. On
        failure a file ``dest`` is removed (a sink is the caller's to close) and the error says
        why (DigestMismatch, NotFound, TransferInterrupted).
        """
        validate_digest(digest)
        sink: BlobSink = FileSink(dest) if isinstance(dest, Path) else dest
        loop = asyncio.get_running_loop()
        pending: asyncio.Future[None] | None = None
        # A sink that fails (corrupt compressed data) stops receiving bytes, but the download
        # goes on to the digest check: a wrong digest is the error to report, not its symptom.
        sink_error: Exception | None = None

        async def flush() -> None:
            nonlocal pending, sink_error
            if pending is not None:
                p, pending = pending, None
                try:
                    await p
                except Exception as exc:  # noqa: BLE001 - re-raised after the digest check
                    sink_error = sink_error or exc

        async def restart() -> None:
            nonlocal offset, h, sink_error
            await flush()
            offset, h, sink_error = 0, hashlib.sha256(), None
            await loop.run_in_executor(None, sink.reset)

        h = hashlib.sha256()
        offset = 0
        failures = 0
        try:
            while True:
                headers = {"Range": f"bytes={offset}-"} if offset else {}
                try:
                    resp = await self.request("GET", f"/v2/{repo}/blobs/{digest}", scope_for(repo, "pull"),
                                              headers=headers)
                    try:
                        if resp.status == 404:
                            raise NotFound(f"blob {digest} not found in {self.host}/{repo}")
                        if resp.status == 416 and size is not None and offset == size:
                            pass
                        elif resp.status == 206 and offset:
                            start = _content_range_start(resp.headers.get("Content-Range", ""))
                            if start != offset:
                                asked = offset
                                await restart()
                                raise _Retry(f"server resumed at byte {start}, not {asked}")
                        elif resp.status == 200:
                            if offset:  # no Range support: start over
                                await restart()
                        else:
                            text = _error_text(await resp.read())[1]
                            if resp.status >= 500 or resp.status == 429:
                                raise _Retry(f"HTTP {resp.status}: {text}")
                            raise RegistryError(f"blob {digest}: HTTP {resp.status}: {text}", resp.status)
                        if resp.status != 416:
                            async for chunk in resp.content.iter_chunked(_READ_CHUNK):
                                h.update(chunk)
                                offset += len(chunk)
                                if size is not None and offset > size:
                                    raise DigestMismatch(digest, "sha256:?", (
                                        f"blob {digest} from {self.host}/{repo} is larger than its "
                                        f"descriptor's {size} bytes"))
                                await flush()
                                if sink_error is None:
                                    pending = loop.run_in_executor(None, sink.write, chunk)
                                if progress:
                                    progress(offset)
                    finally:
                        resp.release()
                    await flush()
                    if size is not None and offset < size:
                        raise _Retry(f"connection closed after {offset} of {size} bytes")
                    break
                except (TimeoutError, _Retry, RegistryUnreachable, aiohttp.ClientPayloadError,
                        aiohttp.ClientConnectionError) as exc:
                    failures += 1
                    if failures > self.options.retries:
                        raise TransferInterrupted(
                            f"download of {digest} from {self.host}/{repo} failed after "
                            f"{failures} attempts: {exc or type(exc).__name__}") from exc
                    log.info("blob %s: %s; resuming at byte %d", digest[:19], exc or type(exc).__name__, offset)
                    await asyncio.sleep(self.options.retry_delay * failures)
            actual = "sha256:" + h.hexdigest()
            if actual != digest:
                raise DigestMismatch(digest, actual, f"blob from {self.host}/{repo} failed verification: "
                                     f"expected {digest}, got {actual}") from sink_error
            if sink_error is not None:
                raise sink_error
        except BaseException:
            if pending is not None:  # let the worker finish before the sink is closed
                await asyncio.wait([pending])
            if isinstance(dest, Path):
                sink.close()
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(dest)
            raise
        if isinstance(dest, Path):
            sink.close()

    # ------------------------------------------------------------------ blobs: upload
    async def blob_exists(self, repo: str, digest: str) -> bool:
        resp = await self.request("HEAD", f"/v2/{repo}/blobs/{digest}", scope_for(repo, "pull,push"))
        resp.release()
        if resp.status == 200:
            return True
        if resp.status == 404:
            return False
        raise RegistryError(f"HEAD blob {digest} in {self.host}/{repo}: HTTP {resp.status}", resp.status)

    async def mount_blob(self, repo: str, digest: str, source_repo: str) -> str | None:
        """Cross-repository mount. Returns None when mounted; else the upload URL the registry
        opened instead (202)."""
        scope = f"{scope_for(repo, 'pull,push')} {scope_for(source_repo, 'pull')}"
        q = urlencode({"mount": digest, "from": source_repo})
        resp = await self.request("POST", f"/v2/{repo}/blobs/uploads/?{q}", scope, data=lambda: b"")
        try:
            await resp.read()
            if resp.status == 201:
                return None
            if resp.status == 202:
                return self._location(resp)
            raise RegistryError(f"mount of {digest} from {source_repo} into {repo}: HTTP {resp.status}",
                                resp.status)
        finally:
            resp.release()

    async def start_upload(self, repo: str) -> str:
        resp = await self.request("POST", f"/v2/{repo}/blobs/uploads/", scope_for(repo, "pull,push"),
                                  data=lambda: b"")
        try:
            body = await resp.read()
            if resp.status != 202:
                code, text = _error_text(body)
                raise RegistryError(f"upload to {self.host}/{repo} refused: HTTP {resp.status}: {text}",
                                    resp.status, code)
            return self._location(resp)
        finally:
            resp.release()

    def _location(self, resp: aiohttp.ClientResponse) -> str:
        loc = resp.headers.get("Location")
        if not loc:
            raise RegistryError(f"{self.host}: upload answer without Location header", resp.status)
        return urljoin(str(resp.url), loc)

    async def upload_stream(self, repo: str, body: Any, digest_of: Callable[[], str]) -> str:
        """Upload a blob whose digest is known only once ``body`` (an async iterator of bytes)
        is exhausted: one streamed PATCH (chunked), then ``PUT ?digest=digest_of()``."""
        scope = scope_for(repo, "pull,push")
        location = await self.start_upload(repo)
        resp = await self.request("PATCH", location, scope, headers={"Content-Type": "application/octet-stream"},
                                  data=_Once(body))
        try:
            text = await resp.read()
            if resp.status != 202:
                raise RegistryError(f"streamed upload to {self.host}/{repo} failed: HTTP {resp.status}: "
                                    f"{_error_text(text)[1]}", resp.status)
            location = self._location(resp)
        finally:
            resp.release()
        digest = digest_of()
        await self._close_upload(repo, scope, location, digest, {"Content-Length": "0"}, lambda: b"")
        return digest

    async def upload_blob(self, repo: str, digest: str, size: int, path: Path,
                          progress: Progress | None = None, location: str | None = None) -> None:
        """Upload the file ``path`` as blob ``digest``: one PUT, or PATCH chunks of
        ``options.chunk_size`` with ``Content-Range`` then a closing PUT."""
        scope = scope_for(repo, "pull,push")
        location = location or await self.start_upload(repo)
        chunk = self.options.chunk_size
        sent = 0
        if chunk and size > chunk:
            while sent < size:
                n = min(chunk, size - sent)
                start = sent
                resp = await self.request(
                    "PATCH", location, scope,
                    headers={"Content-Type": "application/octet-stream", "Content-Length": str(n),
                             "Content-Range": f"{start}-{start + n - 1}"},
                    data=lambda s=start, n=n: _file_reader(path, s, n, progress, sent_before=s))
                try:
                    body = await resp.read()
                    if resp.status != 202:
                        raise RegistryError(f"chunk upload of {digest} to {self.host}/{repo} failed: "
                                            f"HTTP {resp.status}: {_error_text(body)[1]}", resp.status)
                    location = self._location(resp)
                finally:
                    resp.release()
                sent += n
            put_body: Callable[[], Any] = lambda: b""  # noqa: E731
            headers = {"Content-Length": "0"}
        else:
            put_body = lambda: _file_reader(path, 0, size, progress, 0)  # noqa: E731
            headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        await self._close_upload(repo, scope, location, digest, headers, put_body)

    async def _close_upload(self, repo: str, scope: str, location: str, digest: str,
                            headers: dict[str, str], data: Callable[[], Any]) -> None:
        """The closing ``PUT <location>?digest=`` of an upload; a registry's DIGEST_INVALID is a
        DigestMismatch, any other refusal a RegistryError."""
        sep = "&" if "?" in location else "?"
        resp = await self.request("PUT", f"{location}{sep}{urlencode({'digest': digest})}", scope,
                                  headers=headers, data=data)
        try:
            body = await resp.read()
            if resp.status not in (201, 204):
                code, text = _error_text(body)
                if code == "DIGEST_INVALID":
                    raise DigestMismatch(digest, "?", f"registry {self.host} rejected blob {digest}: {text}")
                raise RegistryError(f"upload of {digest} to {self.host}/{repo} failed: HTTP {resp.status}: {text}",
                                    resp.status, code)
        finally:
            resp.release()


class _Once:
    """A body factory for :meth:`RegistryClient.request` that refuses a second send (a stream
    cannot be replayed after an auth challenge)."""

    def __init__(self, body: Any) -> None:
        self._body = body
        self._sent = False

    def __call__(self) -> Any:
        if self._sent:
            raise RegistryError("the registry asked to authenticate again in the middle of an upload")
        self._sent = True
        return self._body


class _Retry(Exception):
    pass


class BlobSink(Protocol):
    """Where downloaded bytes go (called from a worker thread, in order)."""

    def write(self, data: bytes) -> None: ...

    def reset(self) -> None:
        """Forget everything written: the download starts over."""

    def close(self) -> None: ...


class FileSink:
    def __init__(self, path: Path) -> None:
        self._f = open(path, "wb")  # noqa: SIM115 - closed by close()

    def write(self, data: bytes) -> None:
        self._f.write(data)

    def reset(self) -> None:
        self._f.seek(0)
        self._f.truncate()

    def close(self) -> None:
        self._f.close()


def _content_range_start(value: str) -> int:
    # "bytes 100-199/200"
    try:
        return int(value.split()[1].split("-")[0])
    except (IndexError, ValueError):
        return -1


async def _file_reader(path: Path, start: int, length: int, progress: Progress | None,
                       sent_before: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        done = sent_before
        while left > 0:
            data = await loop.run_in_executor(None, f.read, min(_READ_CHUNK, left))
            if not data:
                raise InvalidArgument(f"{path} is shorter than {start + length} bytes")
            left -= len(data)
            done += len(data)
            yield data
            if progress:
                progress(done)


def _pick_challenge(headers: Iterable[str]) -> Challenge | None:
    found: list[Challenge] = []
    for h in headers:
        found.extend(parse_challenges(h))
    for scheme in ("bearer", "basic"):
        for ch in found:
            if ch.scheme == scheme:
                return ch
    return None


async def gather_limited(coros: list[Awaitable[Any]]) -> list[Any]:
    """Run every coroutine; on the first failure cancel the rest and raise it."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        return await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
