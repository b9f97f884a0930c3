"""A tiny registry (aiohttp, own thread and loop, 127.0.0.1) that can misbehave on purpose:
serve a corrupt layer, drop the connection mid-layer, ignore Range, require a bearer token,
answer manifests with an error status; optionally below a path prefix (a mirror's)."""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import io
import json
import tarfile
import threading
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o755
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


@dataclass
class FakeImage:
    manifest: bytes
    config: bytes
    layers: list[bytes]  # compressed blobs
    diff_ids: list[str]

    @property
    def digest(self) -> str:
        return sha(self.manifest)


def make_image(sizes: tuple[int, ...] = (300_000,), arch: str = "amd64", seed: bytes = b"x") -> FakeImage:
    layers, diff_ids = [], []
    for i, n in enumerate(sizes):
        # incompressible content, so the compressed blob is as big as asked
        data = b"".join(hashlib.sha256(seed + bytes([i]) + k.to_bytes(4, "big")).digest() for k in range(n // 32 + 1))[:n]
        tar = layer_tar({f"file{i}.bin": data, f"hello{i}.txt": b"hello %d\n" % i})
        diff_ids.append(sha(tar))
        layers.append(gzip.compress(tar, compresslevel=1, mtime=0))
    config = json.dumps({"architecture": arch, "os": "linux", "config": {"Cmd": ["sh"]},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids},
                         "history": [{"created_by": f"layer {i}"} for i in range(len(sizes))]}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config), "digest": sha(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(b), "digest": sha(b)}
                   for b in layers],
    }).encode()
    return FakeImage(manifest, config, layers, diff_ids)


@dataclass
class FakeRegistry:
    """Serves ``repos[name][tag] = FakeImage``. Knobs: ``corrupt`` (flip a byte of every
    layer), ``drop_after`` (bytes of a layer sent before the connection is cut, ``drop_times``
    times), ``no_range``, ``token`` (require ``Bearer <token>``; ``user``/``password`` at /token)."""

    repos: dict[str, dict[str, FakeImage]] = field(default_factory=dict)
    corrupt: bool = False
    drop_after: int = 0
    drop_times: int = 0
    no_range: bool = False
    token: str = ""
    user: str = ""
    password: str = ""
    refresh_token: str = ""
    die_mid_layer: bool = False  # after cutting one layer, reset every later connection
    dead: bool = False
    delay: float = 0.0  # seconds to wait before serving a layer
    prefix: str = ""  # serve the API below this path ("/hub": /hub/v2/...), as a mirror may
    manifest_status: int = 0  # answer every manifest request with this HTTP status (e.g. 503)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    in_flight: int = 0
    max_in_flight: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeRegistry:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    async def _start(self) -> None:
        app = web.Application()
        p = self.prefix.rstrip("/")
        app.router.add_get(f"{p}/v2/", self._ping)
        app.router.add_route("*", "/token", self._token)
        app.router.add_route("*", p + "/v2/{name:.+}/manifests/{ref}", self._manifest)
        app.router.add_route("*", p + "/v2/{name:.+}/blobs/{digest}", self._blob)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def _denied(self, request: web.Request) -> web.Response | None:
        if not self.token:
            return None
        if request.headers.get("Authorization") == f"Bearer {self.token}":
            return None
        return web.json_response(
            {"errors": [{"code": "UNAUTHORIZED", "message": "authentication required"}]}, status=401,
            headers={"WWW-Authenticate": f'Bearer realm="http://{self.host}/token",service="fake",'
                                         f'scope="repository:{request.match_info.get("name", "")}:pull"'})

    async def _ping(self, request: web.Request) -> web.Response:
        self.requests.append(("GET", request.path, dict(request.headers)))
        return self._denied(request) or web.json_response({})

    async def _token(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path_qs, dict(request.headers)))
        if request.method == "POST":  # OAuth2 refresh-token grant (an identity token)
            form = await request.post()
            if form.get("grant_type") == "refresh_token" and form.get("refresh_token") == self.refresh_token:
                return web.json_response({"access_token": self.token, "expires_in": 300,
                                          "scope": form.get("scope", "")})
            return web.json_response({"error": "invalid_grant"}, status=401)
        want = "Basic " + base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != want:
            return web.json_response({"details": "bad credentials"}, status=401)
        return web.json_response({"token": self.token, "expires_in": 300})

    def _find(self, name: str) -> dict[str, FakeImage]:
        return self.repos.get(name) or {}

    async def _manifest(self, request: web.Request) -> web.Response:
        self.requests.append((request.method, request.path, dict(request.headers)))
        denied = self._denied(request)
        if denied:
            return denied
        if self.manifest_status:
            return web.json_response({"errors": [{"code": "UNAVAILABLE", "message": "try later"}]},
                                     status=self.manifest_status)
        ref = request.match_info["ref"]
        for tag, img in self._find(request.match_info["name"]).items():
            if ref in (tag, img.digest):
                return web.Response(body=img.manifest, headers={"Content-Type": DOCKER_MANIFEST,
                                                                "Docker-Content-Digest": img.digest})
        return web.json_response({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]},
                                 status=404)

    async def _blob(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.method, request.path, dict(request.headers)))
        if self.dead:
            assert request.transport is not None
            request.transport.abort()  # as if the registry were gone
            return web.Response()
        denied = self._denied(request)
        if denied:
            return denied
        digest = request.match_info["digest"]
        data: bytes | None = None
        is_layer = False
        for img in self._find(request.match_info["name"]).values():
            if digest == sha(img.config):
                data = img.config
            for b in img.layers:
                if digest == sha(b):
                    data, is_layer = b, True
        if data is None:
            return web.json_response({"errors": [{"code": "BLOB_UNKNOWN", "message": "blob unknown"}]}, status=404)
        if is_layer and self.corrupt:
            data = data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]
        start = 0
        rng = request.headers.get("Range", "")
        status = 200
        headers = {"Content-Type": "application/octet-stream", "Docker-Content-Digest": digest}
        if rng.startswith("bytes=") and not self.no_range:
            start = int(rng[6:].split("-")[0])
            status = 206
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        body = data[start:]
        if is_layer and request.method == "GET":
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                await asyncio.sleep(self.delay)
                return await self._send(request, status, headers, body, is_layer)
            finally:
                self.in_flight -= 1
        return await self._send(request, status, headers, body, is_layer)

    async def _send(self, request: web.Request, status: int, headers: dict[str, str], body: bytes,
                    is_layer: bool) -> web.StreamResponse:
        resp = web.StreamResponse(status=status, headers=headers)
        resp.content_length = len(body)
        await resp.prepare(request)
        if is_layer and self.drop_times > 0 and len(body) > self.drop_after:
            self.drop_times -= 1
            await resp.write(body[: self.drop_after])
            await asyncio.sleep(0.05)
            assert request.transport is not None
            request.transport.abort()  # the connection drops mid-layer
            self.dead = self.die_mid_layer
            return resp
        await resp.write(body)
        await resp.write_eof()
        return resp

    def range_requests(self) -> list[str]:
        return [h.get("Range", "") for m, p, h in self.requests if "/blobs/" in p and h.get("Range")]


def start(**kw: Any) -> FakeRegistry:
    return FakeRegistry(**kw).start()
