"""Docker Engine API routes of the registry client: pull, push, distribution inspect, login.

Errors raised before a stream starts are typed (the API front's middleware maps them: a
missing manifest is ``404``); once streaming, failures become an ``error`` line, as dockerd
does.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.reference import InvalidReference, Reference, parse_normalized
from dockyard.server import KERNEL_KEY
from dockyard_distribution import progress as pm
from dockyard_distribution.auth import AuthConfig, decode_registry_auth
from dockyard_distribution.client import RegistryClient, RegistryOptions, Unauthorized
from dockyard_distribution.mediatypes import INDEXES, Platform, index_platforms
from dockyard_distribution.mirrors import first_answer, pull_clients, validate_mirrors
from dockyard_distribution.store import ImageStore
from dockyard_distribution.transfer import (
    final_line,
    registry_host,
    resolve_pull,
    resolve_push,
    run_pull,
    run_push,
)

log = logging.getLogger(__name__)
API_VERSION = "1.41"


def registry_options(kernel: Any) -> RegistryOptions:
    cfg = kernel.config
    return RegistryOptions(
        insecure_registries=list(cfg.get("insecure-registries") or []),
        certs_dir=Path(cfg.data_root) / "certs.d",
        max_concurrent_downloads=int(cfg.get("max-concurrent-downloads") or 3),
        max_concurrent_uploads=int(cfg.get("max-concurrent-uploads") or 5),
        mirrors=validate_mirrors(cfg.get("registry-mirrors") or []),
    )


def _client(kernel: Any, ref: Reference, auth: AuthConfig | None) -> RegistryClient:
    """The registry itself (pushes, distribution inspect): never a mirror."""
    return RegistryClient(registry_host(ref), registry_options(kernel), auth)


async def _close(clients: list[RegistryClient]) -> None:
    for c in clients:
        await c.close()


def _parse(name: str, tag: str = "", default_tag: bool = True) -> Reference:
    try:
        if tag:
            if tag.startswith("sha256:"):
                return parse_normalized(f"{name}@{tag}", default_tag=False)
            return parse_normalized(name, default_tag=False).with_tag(tag)
        return parse_normalized(name, default_tag=default_tag)
    except InvalidReference as exc:
        raise InvalidArgument(str(exc)) from exc


async def stream(request: web.Request, job: Callable[[Callable[[dict[str, Any]], None]], Awaitable[Any]]
                 ) -> web.StreamResponse:
    """Run ``job(emit)`` and stream what it emits as JSON lines; a failure is an error line."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def runner() -> None:
        try:
            await job(queue.put_nowait)
        except DockyardError as exc:
            queue.put_nowait(pm.error(str(exc)))
        except Exception as exc:  # noqa: BLE001 - reported to the client, logged here
            log.exception("%s %s failed", request.method, request.path)
            queue.put_nowait(pm.error(f"{type(exc).__name__}: {exc}"))
        finally:
            queue.put_nowait(None)

    resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json", "Api-Version": API_VERSION,
                                                   "Docker-Experimental": "false", "Ostype": "linux"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    task = asyncio.create_task(runner())
    try:
        while True:
            msg = await queue.get()
            if msg is None:
                break
            await resp.write(json.dumps(msg, separators=(",", ":")).encode() + b"\n")
    except (ConnectionResetError, asyncio.CancelledError):
        task.cancel()
        with __import__("contextlib").suppress(BaseException):
            await task
        raise
    await task
    await resp.write_eof()
    return resp


def _auth(request: web.Request) -> AuthConfig | None:
    return decode_registry_auth(request.headers.get("X-Registry-Auth"))


# ------------------------------------------------------------------------------------- handlers
async def pull(kernel: Any, reference: str, platform: str = "", auth: dict[str, Any] | AuthConfig | None = None,
               progress: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """Pull ``reference`` into the image store (the service entry of ``ImagePuller``)."""
    if isinstance(auth, dict):
        auth = AuthConfig.from_dict(auth)
    ref = _parse(reference)
    want = Platform.parse(platform) if platform else None
    clients = pull_clients(ref, registry_options(kernel), auth)
    try:
        client, plan = await first_answer(clients, lambda c: resolve_pull(c, ref, want), ref.familiar())
        image, _changed = await run_pull(client, plan, ImageStore(kernel), progress or (lambda _m: None))
        return image
    finally:
        await _close(clients)


async def pull_image(request: web.Request) -> web.StreamResponse:
    """``POST /images/create?fromImage=NAME&tag=TAG[&platform=os/arch]``."""
    kernel = request.app[KERNEL_KEY]
    name = request.query.get("fromImage", "")
    if not name:
        raise InvalidArgument("fromImage is required")
    tag = request.query.get("tag", "")
    ref = _parse(name, tag, default_tag=False)
    raw_platform = request.query.get("platform", "")
    platform = Platform.parse(raw_platform) if raw_platform else None
    store = ImageStore(kernel)
    clients = pull_clients(ref, registry_options(kernel), _auth(request))  # mirrors first (docker.io)
    try:
        if ref.tag or ref.digest:
            # typed errors: before any streaming
            client, plan = await first_answer(clients, lambda c: resolve_pull(c, ref, platform), ref.familiar())
            return await stream(request, lambda emit: run_pull(client, plan, store, emit))
        # no tag at all (``docker pull --all-tags``): every tag of the repository
        client, listed = await first_answer(clients, lambda c: c.list_tags(ref.path, ref.familiar()), ref.familiar())
        tags = sorted(listed)
        if not tags:
            raise NotFound(f"repository {ref.familiar()} has no tags")
        plans = [await resolve_pull(client, ref.with_tag(t), platform) for t in tags]

        async def job(emit: Callable[[dict[str, Any]], None]) -> None:
            changed = False
            for plan in plans:
                changed = (await run_pull(client, plan, store, emit, final_status=False))[1] or changed
            emit(final_line(changed, ref.familiar()))

        return await stream(request, job)
    finally:
        await _close(clients)


async def push_image(request: web.Request) -> web.StreamResponse:
    """``POST /images/{name}/push?tag=TAG``."""
    kernel = request.app[KERNEL_KEY]
    name = request.match_info["name"]
    tag = request.query.get("tag", "")
    store = ImageStore(kernel)
    ref = _parse(name, tag, default_tag=False)  # no tag: every local tag of the repository
    if ref.digest:
        raise InvalidArgument("cannot push a digest reference")
    tags = [ref] if ref.tag else _all_tags(store, ref)
    # a tag naming an image index pushes every platform present, then the index (containerd's store)
    indexed = [r for r in tags if store.images.index_of(str(r)) is not None]
    plans = [resolve_push(store, r) for r in tags if r not in indexed]  # NotFound before streaming
    client = _client(kernel, ref, _auth(request))
    auth = _auth(request)

    async def job(emit: Callable[[dict[str, Any]], None]) -> None:
        from dockyard_distribution import manifests

        for i, plan in enumerate(plans):
            await run_push(client, plan, store, emit, header=i == 0)
        for r in indexed:
            await manifests.push(kernel, str(r), str(r), auth, emit)

    try:
        return await stream(request, job)
    finally:
        await client.close()


def _all_tags(store: ImageStore, ref: Reference) -> list[Reference]:
    out = []
    for img in store.images.list():
        for t in img.repo_tags:
            r = parse_normalized(t)
            if r.name == ref.name:
                out.append(r)
    if not out:
        return [ref.with_tag("latest")]
    return sorted(out, key=str)


async def distribution_inspect(request: web.Request) -> web.Response:
    """``GET /distribution/{name}/json``: the descriptor the tag names and its platforms."""
    kernel = request.app[KERNEL_KEY]
    ref = _parse(request.match_info["name"])
    async with _client(kernel, ref, _auth(request)) as client:
        top = await client.get_manifest(ref.path, ref.digest or ref.tag or "latest", display=ref.familiar())
        desc = {"mediaType": top.media_type, "digest": top.digest, "size": len(top.body)}
        if top.media_type in INDEXES:
            platforms = index_platforms(top.json())
        else:
            doc = top.json()
            cfg = json.loads(await client.get_blob_bytes(ref.path, doc["config"]["digest"]))
            plat = {"architecture": cfg.get("architecture", ""), "os": cfg.get("os", "")}
            if cfg.get("variant"):
                plat["variant"] = cfg["variant"]
            platforms = [plat]
    return _json({"Descriptor": desc, "Platforms": platforms})


async def login(request: web.Request) -> web.Response:
    """``POST /auth``: check the credentials against the registry."""
    kernel = request.app[KERNEL_KEY]
    raw = await request.read()
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise InvalidArgument(f"invalid JSON body: {exc}") from exc
    cfg = AuthConfig.from_dict(body)
    server = cfg.serveraddress or "docker.io"
    host = server.removeprefix("https://").removeprefix("http://").split("/")[0]
    if host in ("index.docker.io", "docker.io", "registry-1.docker.io"):
        host = "registry-1.docker.io"
    client = RegistryClient(host, registry_options(kernel), cfg)
    try:
        await client.login()
    except Unauthorized as exc:
        return _json({"message": f"login attempt to {host} failed: {exc}"}, status=401)
    finally:
        await client.close()
    return _json({"IdentityToken": "", "Status": "Login Succeeded"})


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, content_type="application/json",
                        body=json.dumps(data, separators=(",", ":")) + "\n")
