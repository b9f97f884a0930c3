"""``POST /build``: dockerd's classic builder endpoint (docker-engine-api.md §7).

Query parameters: ``t`` (repeated), ``dockerfile``, ``buildargs`` and ``labels`` (JSON objects),
``target``, ``nocache``, ``q``, ``rm`` (default true), ``forcerm``, ``pull``, ``platform``,
``networkmode``. The body is the context tar (``application/x-tar`` or ``application/tar``,
chunked or with a Content-Length, optionally gzip/bzip2/xz compressed). Errors found before the
build starts (a Dockerfile that does not parse, a missing Dockerfile, a bad tag) are an HTTP
400 answer, as dockerd gives; after that the answer is a 200 JSON stream and a failure is an
in-stream ``errorDetail`` whose ``code`` is a failed RUN's exit code, which ``docker build``
exits with.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from aiohttp import web

from dockyard import __version__ as core_version
from dockyard.errors import DockyardError, InvalidArgument, Unavailable
from dockyard.server import KERNEL_KEY
from dockyard_builder.builder import Builder, BuildOptions, StepFailed, parse_query_json
from dockyard_builder.cache import BuildCache
from dockyard_builder.context import BuildContext
from dockyard_builder.sweep import work_dir_name

log = logging.getLogger(__name__)

FALSE_WORDS = ("", "0", "false", "no", "off")
TAR_TYPES = ("application/x-tar", "application/tar", "application/octet-stream", "")


def qbool(request: web.Request, name: str, default: bool = False) -> bool:
    if name not in request.query:
        return default
    return request.query[name].strip().lower() not in FALSE_WORDS


def data_dir(kernel: Any) -> Path:
    return Path(kernel.config.data_root) / "builder"


def cache_of(kernel: Any) -> BuildCache:
    return BuildCache(data_dir(kernel) / "cache.db")


def options_from(request: web.Request) -> BuildOptions:
    q = request.query
    if q.get("remote"):
        raise InvalidArgument(f"remote build contexts ({q['remote']}) are not supported: the builder works "
                              "offline; send the context as the request body")
    args = parse_query_json(q.get("buildargs", ""), "buildargs")
    labels = parse_query_json(q.get("labels", ""), "labels")
    return BuildOptions(
        dockerfile=q.get("dockerfile") or "Dockerfile",
        tags=[t for t in q.getall("t", []) if t],
        build_args={str(k): (None if v is None else str(v)) for k, v in args.items()},
        labels={str(k): str(v) for k, v in labels.items()},
        target=q.get("target", ""),
        no_cache=qbool(request, "nocache"),
        quiet=qbool(request, "q"),
        rm=qbool(request, "rm", True),
        force_rm=qbool(request, "forcerm"),
        pull=qbool(request, "pull"),
        platform=q.get("platform", ""),
        network_mode=q.get("networkmode", "") or "default",
        extra_hosts=extra_hosts(q.getall("extrahosts", [])),
        cache_from=cache_from(q.get("cachefrom", "")),
    )


async def build_index(kernel: Any, builders: list[Builder], tags: list[str], emit: Any) -> list[str]:
    """Run each platform's build in turn (RUN steps of a foreign one under emulation), then put
    every result in the index each tag names (``Images.add_to_tag``), as ``buildx build
    --platform a,b`` makes one index; returns the image IDs, one per platform."""
    ids = []
    for b in builders:
        await emit({"stream": f"[{b.target}] building\n"})
        ids.append(await b.run())
    for tag in tags:
        for image_id in ids:
            await kernel.images.add_to_tag(tag, kernel.images.get(image_id), source="build")
        await emit({"stream": f"Successfully tagged {tag} (an index of {', '.join(str(b.target) for b in builders)})\n"})
    return ids


def extra_hosts(values: list[str]) -> list[str]:
    """``extrahosts``: repeated (docker-py) or comma-joined (the docker CLI), ``host:ip`` or
    ``host=ip``, as ``HostConfig.ExtraHosts`` takes them."""
    out = []
    for value in values:
        for entry in value.split(","):
            entry = entry.strip()
            if not entry:
                continue
            host, sep, ip = entry.partition("=") if "=" in entry else entry.partition(":")
            if not sep or not host or not ip:
                raise InvalidArgument(f"invalid IP address in add-host: {entry!r}")
            out.append(f"{host}:{ip}")
    return out


def cache_from(value: str) -> list[str]:
    """``cachefrom``: a JSON array of image references (the CLI's and docker-py's form)."""
    if not value:
        return []
    try:
        refs = json.loads(value)
    except ValueError as exc:
        raise InvalidArgument(f"cachefrom: not a JSON array: {exc}") from None
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise InvalidArgument("cachefrom: expected a JSON array of image references")
    return [r for r in refs if r]


async def _spool(request: web.Request, path: Path) -> None:
    with open(path, "wb") as f:
        while True:
            chunk = await request.content.read(1 << 20)
            if not chunk:
                break
            await asyncio.to_thread(f.write, chunk)


async def build(request: web.Request) -> web.StreamResponse:
    kernel = request.app[KERNEL_KEY]
    ctype = request.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype not in TAR_TYPES:
        raise InvalidArgument(f"unsupported Content-Type {ctype!r}: send the build context as application/x-tar")
    opts = options_from(request)
    work = data_dir(kernel) / "tmp" / work_dir_name()
    work.mkdir(parents=True, exist_ok=True)
    try:
        tar = work / "context.tar"
        await _spool(request, tar)
        ctx = await asyncio.to_thread(BuildContext.unpack, tar, work / "context", opts.dockerfile)
        tar.unlink(missing_ok=True)
        resp = web.StreamResponse(status=200)
        resp.content_type = "application/json"
        resp.enable_chunked_encoding()

        async def emit(msg: dict[str, Any]) -> None:
            if not resp.prepared:
                await resp.prepare(request)
            await resp.write((json.dumps(msg) + "\r\n").encode())

        targets = [p.strip() for p in opts.platform.split(",") if p.strip()] if "," in opts.platform else []
        puller = registry_puller(kernel, request.headers.get("X-Registry-Config", ""))
        if targets:  # a multi-platform build: one build per platform, gathered under the tags as an index
            builders = [Builder(kernel, ctx, dataclasses.replace(opts, platform=p, tags=[]), emit, cache_of(kernel),
                                puller=puller) for p in targets]
        else:
            builder = Builder(kernel, ctx, opts, emit, cache_of(kernel), puller=puller)  # parse errors: a 400
        _headers(resp)
        await resp.prepare(request)
        try:
            if targets:
                await build_index(kernel, builders, opts.tags, emit)
            else:
                await builder.run()
        except StepFailed as exc:
            await emit({"errorDetail": {"code": exc.code, "message": str(exc)}, "error": str(exc)})
        except DockyardError as exc:
            await emit({"errorDetail": {"message": str(exc)}, "error": str(exc)})
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - reported in the stream, as dockerd does
            log.exception("build failed")
            msg = f"internal error: {type(exc).__name__}: {exc}"
            await emit({"errorDetail": {"message": msg}, "error": msg})
        await resp.write_eof()
        return resp
    finally:
        await asyncio.to_thread(shutil.rmtree, work, True)


def registry_puller(kernel: Any, registry_config: str) -> Any:
    """A puller for base images through the installed ``ImagePuller`` (the registry plugin's),
    or None when no registry plugin is installed.

    Credentials come from the build's ``X-Registry-Config`` for the image's registry; the
    pull's progress lines are relayed, in order, into the build stream.
    """
    puller = kernel.hook.dockyard_image_puller(kernel=kernel)
    if puller is None:
        return None

    async def pull(ref: str, emit: Any, platform: str = "") -> None:
        from dockyard.reference import parse_normalized

        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def relay() -> None:
            while (msg := await queue.get()) is not None:
                await emit(msg)

        def progress(msg: dict[str, Any]) -> None:
            queue.put_nowait({k: v for k, v in msg.items() if k in ("status", "id", "progress", "progressDetail")})

        relaying = asyncio.create_task(relay())
        try:
            await puller.pull(kernel, ref, auth=_auth_for(registry_config, parse_normalized(ref).domain),
                              progress=progress, **({"platform": platform} if platform else {}))
        except DockyardError as exc:  # same type where it can be (404 stays 404), with the context
            try:
                wrapped = type(exc)(f"pulling {ref}: {exc}")
            except TypeError:  # an error with a richer constructor (DigestMismatch...)
                wrapped = Unavailable(f"pulling {ref}: {exc}")
            raise wrapped from exc
        finally:
            queue.put_nowait(None)
            await relaying

    return pull


def _auth_for(registry_config: str, domain: str) -> dict[str, Any] | None:
    """Docker's AuthConfig for ``domain`` out of a build's ``X-Registry-Config`` (or None)."""
    import base64

    if not registry_config:
        return None
    try:
        configs = json.loads(base64.urlsafe_b64decode(registry_config + "=" * (-len(registry_config) % 4)))
    except ValueError:
        return None
    if not isinstance(configs, dict):
        return None
    keys = [domain, f"https://{domain}", "https://index.docker.io/v1/" if domain == "docker.io" else ""]
    for key in keys:
        if key and isinstance(configs.get(key), dict):
            return dict(configs[key])
    return None


def _headers(resp: web.StreamResponse) -> None:
    resp.headers.setdefault("Api-Version", "1.41")
    resp.headers.setdefault("Docker-Experimental", "false")
    resp.headers.setdefault("Ostype", "linux")
    resp.headers.setdefault("Server", f"Dockyard/{core_version} (linux)")


async def prune_cache(request: web.Request) -> web.Response:
    """``POST /build/prune``: drop cache entries whose image is gone (images are pruned by
    ``docker image prune``; the builder keeps no other cache storage)."""
    kernel = request.app[KERNEL_KEY]
    images = kernel.images

    def exists(image_id: str) -> bool:
        try:
            images.get(image_id)
            return True
        except DockyardError:
            return False

    removed = await asyncio.to_thread(cache_of(kernel).prune, exists)
    return web.json_response({"CachesDeleted": None, "SpaceReclaimed": 0, "EntriesDropped": removed})
