"""Image routes of the Docker API front (``shared/reference/docker-engine-api.md`` §6, §8).

The core's image service does the work; this module parses Docker's parameters, applies
``filters`` and renders dockerd's shapes. Names in paths may hold ``/`` and ``:``
(``127.0.0.1:5000/x:1``), hence the ``{name:.+}`` patterns. Load and import answer with a JSON
message stream (progress per layer, then the result or an ``error`` line).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.kernel import Kernel
from dockyard.model import Image
from dockyard.reference import parse_normalized
from dockyard.specs.api import ApiRoute
from dockyard_api_docker.filters import Filters
from dockyard_api_docker.http import json_response, kernel_of, qbool
from dockyard_api_docker.middleware import docker_headers, error_response

LIST_FILTERS = {"reference", "label", "dangling", "before", "since", "until"}
PRUNE_FILTERS = {"dangling", "label", "label!", "until"}
ZERO_TIME = "0001-01-01T00:00:00Z"


def _svc(kernel: Kernel) -> Any:
    return kernel.images


def familiar(ref: str) -> str:
    try:
        return parse_normalized(ref).familiar()
    except DockyardError:
        return ref


def _full(ref: str) -> str:
    try:
        return str(parse_normalized(ref, default_tag=False))
    except DockyardError:
        return ref


def ordered(refs: list[str]) -> list[str]:
    """Tags or digests in familiar form, in dockerd's order: lexical by the full normalized
    reference (its reference store sorts by ``String()``); clients take the first tag."""
    return [familiar(r) for r in sorted(refs, key=_full)]


def unix(text: str) -> int:
    from dockyard.times import unix_time

    return unix_time(text)


def rfc3339_nano(text: str) -> str:
    """dockerd prints image times as RFC 3339 with nanoseconds and ``Z``."""
    return text or ZERO_TIME


# ----------------------------------------------------------------------------- shapes
def summary(img: Image, containers: int = -1, shared: int = -1) -> dict[str, Any]:
    tags = ordered(img.repo_tags)
    digests = ordered(img.repo_digests)
    dangling = not tags and not digests
    return {
        "Containers": containers,
        "Created": unix(img.created),
        "Id": img.id,
        "Labels": dict(img.config.labels) or None,
        "ParentId": img.parent,
        "RepoDigests": ["<none>@<none>"] if dangling else (digests or None),
        "RepoTags": ["<none>:<none>"] if dangling else (tags or None),
        "SharedSize": shared,
        "Size": img.size,
        "VirtualSize": img.size,
    }


_CONTAINER_CONFIG_DEFAULTS: dict[str, Any] = {
    "Hostname": "", "Domainname": "", "User": "", "AttachStdin": False, "AttachStdout": False,
    "AttachStderr": False, "Tty": False, "OpenStdin": False, "StdinOnce": False, "Env": None, "Cmd": None,
    "Image": "", "Volumes": None, "WorkingDir": "", "Entrypoint": None, "OnBuild": None, "Labels": None,
}


def _container_config(cfg: Any) -> dict[str, Any]:
    out = dict(_CONTAINER_CONFIG_DEFAULTS)
    if isinstance(cfg, dict):
        out.update(cfg)
    return out


def inspect(kernel: Kernel, img: Image) -> dict[str, Any]:
    doc = _svc(kernel).config_doc(img)
    drv = kernel.selected_driver_name("storage")
    out = {
        "Id": img.id,
        "RepoTags": ordered(img.repo_tags),
        "RepoDigests": ordered(img.repo_digests),
        "Parent": img.parent,
        "Comment": img.comment,
        "Created": rfc3339_nano(img.created),
        "Container": str(doc.get("container") or ""),
        "ContainerConfig": _container_config(doc.get("container_config")),
        "DockerVersion": str(doc.get("docker_version") or ""),
        "Author": img.author,
        "Config": _container_config(doc.get("config")),
        "Architecture": img.architecture,
        "Os": img.os,
        "Size": img.size,
        "VirtualSize": img.size,
        "GraphDriver": {"Data": None, "Name": drv},
        "RootFS": {"Type": "layers", "Layers": list(img.layers)},
        "Metadata": {"LastTagTime": img.last_tag_time or ZERO_TIME},
    }
    if img.variant:
        out["Variant"] = img.variant
    return out


# ----------------------------------------------------------------------------- filters
def _path_match(pattern: str, text: str) -> bool:
    """Go's ``path.Match``: ``*`` and ``?`` do not cross ``/``."""
    rx = ""
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            rx += "[^/]*"
        elif c == "?":
            rx += "[^/]"
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                rx += re.escape(c)
            else:
                body = pattern[i + 1:j]
                if body.startswith("^"):
                    body = "!" + body[1:]
                rx += "[" + ("^" + body[1:] if body.startswith("!") else body) + "]"
                i = j
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            rx += re.escape(pattern[i])
        else:
            rx += re.escape(c)
        i += 1
    try:
        return re.fullmatch(rx, text) is not None
    except re.error:
        return False


def reference_matches(tag: str, patterns: list[str]) -> bool:
    """dockerd's ``reference.FamiliarMatch`` on the familiar string, then the familiar name."""
    try:
        ref = parse_normalized(tag)
    except DockyardError:
        return False
    return any(_path_match(p, ref.familiar()) or _path_match(p, ref.familiar_name) for p in patterns)


def parse_until(raw: str, now: float | None = None) -> float:
    """dockerd's ``until``: unix seconds, an RFC 3339 time, or a Go duration before now."""
    now = time.time() if now is None else now
    if re.fullmatch(r"\d+(\.\d+)?", raw):
        return float(raw)
    units = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", raw)
    if parts and "".join(a + b for a, b in parts) == raw:
        return now - sum(float(a) * units[b] for a, b in parts)
    try:
        dt = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InvalidArgument(f"invalid filter 'until={raw}': expected a timestamp or a duration") from exc
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def _ref_time(svc: Any, ref: str) -> str:
    return svc.resolve(ref).created


async def list_images(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    svc = _svc(kernel)
    flt = Filters.parse(request.query.get("filters"), LIST_FILTERS)
    show_all = qbool(request, "all")
    images = svc.list()
    parents = {i.parent for i in images if i.parent}
    patterns = flt.get("reference")
    before = [unix(_ref_time(svc, r)) for r in flt.get("before")]
    since = [unix(_ref_time(svc, r)) for r in flt.get("since")]
    until = [parse_until(r) for r in flt.get("until")]
    out = []
    for img in sorted(images, key=lambda i: unix(i.created), reverse=True):
        dangling = not img.repo_tags and not img.repo_digests
        if dangling and not show_all and img.id in parents:
            continue
        if not flt.match_bool("dangling", dangling):
            continue
        if patterns:  # dockerd keeps only the matching names of an image
            tags = [t for t in img.repo_tags if reference_matches(t, patterns)]
            if not tags:
                continue
            img = dataclasses.replace(img, repo_tags=tags, repo_digests=[])
        if not flt.match_labels(img.config.labels):
            continue
        created = unix(img.created)
        if any(created >= b for b in before) or any(created <= s for s in since) or any(created > u for u in until):
            continue
        out.append(summary(img))
    return json_response(out)


# ----------------------------------------------------------------------------- single image
async def inspect_image(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    return json_response(inspect(kernel, _svc(kernel).resolve(request.match_info["name"])))


async def image_history(request: web.Request) -> web.Response:
    return json_response(_svc(kernel_of(request)).history(request.match_info["name"]))


async def tag_image(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    repo = request.query.get("repo", "")
    if not repo:
        raise InvalidArgument("repository name must be given (repo)")
    await _svc(kernel).tag(request.match_info["name"], repo, request.query.get("tag", ""))
    return web.Response(status=201)


async def remove_image(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    records = await _svc(kernel).remove(request.match_info["name"], force=qbool(request, "force"),
                                        prune=not qbool(request, "noprune"))
    return json_response(records)


async def prune_images(request: web.Request) -> web.Response:
    kernel = kernel_of(request)
    flt = Filters.parse(request.query.get("filters"), PRUNE_FILTERS)
    dangling_only = True
    for v in flt.get("dangling"):
        if v.lower() in ("0", "false"):
            dangling_only = False
        elif v.lower() not in ("1", "true"):
            raise InvalidArgument(f"invalid filter 'dangling={v}'")
    until = [parse_until(u) for u in flt.get("until")]
    negated = flt.get("label!")

    def match(img: Image) -> bool:
        if not flt.match_labels(img.config.labels):
            return False
        for expr in negated:
            k, sep, v = expr.partition("=")
            if k in img.config.labels and (not sep or img.config.labels[k] == v):
                return False
        return not any(unix(img.created) >= u for u in until)

    records, reclaimed = await _svc(kernel).prune(dangling_only=dangling_only, match=match)
    return json_response({"ImagesDeleted": records or None, "SpaceReclaimed": reclaimed})


# ----------------------------------------------------------------------------- save
async def _send_archive(request: web.Request, names: list[str]) -> web.StreamResponse:
    if not names:
        raise InvalidArgument("no image names given")
    gen = _svc(kernel_of(request)).save_stream(names)
    try:
        first = await gen.__anext__()  # NotFound surfaces before the answer starts
    except StopAsyncIteration:
        first = b""
    resp = web.StreamResponse(status=200)
    resp.content_type = "application/x-tar"
    docker_headers(resp)
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    try:
        await resp.write(first)
        async for chunk in gen:
            await resp.write(chunk)
        await resp.write_eof()
    except (ConnectionResetError, asyncio.CancelledError):
        await gen.aclose()
        raise
    return resp


async def get_image(request: web.Request) -> web.StreamResponse:
    return await _send_archive(request, [request.match_info["name"]])


async def get_images(request: web.Request) -> web.StreamResponse:
    return await _send_archive(request, request.query.getall("names", []))


# ----------------------------------------------------------------------------- JSON streams
def progress_bar(current: int, total: int) -> str:
    # go-units HumanSize (2.164MB, 32.77kB); imported here: the dockyard.client package (the
    # CLI's API client) is ~0.1 MiB a daemon that shows no progress bar does not need (#21 item 10)
    from dockyard.client.units import human_size

    if total <= 0:
        return human_size(current)
    width = 50
    filled = min(width, int(width * current / total))
    bar = "=" * filled + (">" if filled < width else "") + " " * max(0, width - filled - 1)
    if filled == width:
        bar = "=" * (width - 1) + ">"
    return f"[{bar}] {human_size(current):>8}/{human_size(total)}"


class JsonStream:
    """A 200 ``application/json`` answer of newline-delimited messages (§8)."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self.resp = web.StreamResponse(status=200)
        self.resp.content_type = "application/json"
        docker_headers(self.resp)
        self.resp.enable_chunked_encoding()
        self._last: dict[str, int] = {}

    async def start(self) -> None:
        await self.resp.prepare(self.request)

    async def send(self, msg: dict[str, Any]) -> None:
        await self.resp.write((json.dumps(msg, separators=(",", ":")) + "\r\n").encode())

    async def progress(self, ev: dict[str, Any]) -> None:
        cur, total = int(ev.get("current") or 0), int(ev.get("total") or 0)
        key = f"{ev.get('status')}:{ev.get('id')}"
        last = self._last.get(key, -1)
        if not ev.get("done") and last >= 0 and cur - last < (1 << 20) and cur != total:
            return  # at most one line per MB and layer
        self._last[key] = cur
        await self.send({"status": ev.get("status", ""), "progressDetail": {"current": cur, "total": total},
                         "progress": progress_bar(cur, total), "id": ev.get("id", "")})

    async def error(self, exc: BaseException) -> None:
        await self.send({"errorDetail": {"message": str(exc)}, "error": str(exc)})


async def run_streamed(stream: JsonStream, work: Callable[[Callable[[dict[str, Any]], None]], Awaitable[Any]],
                       show_progress: bool) -> tuple[Any, BaseException | None]:
    """Run ``work(progress)`` while forwarding its progress events to ``stream``."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def progress(ev: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, ev)

    task = asyncio.ensure_future(work(progress if show_progress else (lambda ev: None)))
    try:
        while True:
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                await stream.progress(getter.result())
                continue
            getter.cancel()
            break
        await asyncio.sleep(0)  # let call_soon_threadsafe deliveries land
        while not queue.empty():
            await stream.progress(queue.get_nowait())
    except BaseException:
        task.cancel()
        raise
    exc = task.exception()
    return (None, exc) if exc is not None else (task.result(), None)


async def _drain(request: web.Request) -> None:
    """Read and drop the rest of a refused upload, so the client gets the error line rather
    than a broken pipe while it is still sending."""
    try:
        while await request.content.readany():
            pass
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception:  # noqa: BLE001 - the body is being discarded anyway
        pass


async def load_images(request: web.Request) -> web.StreamResponse:
    from dockyard_api_docker.http import AsyncBodyReader

    kernel = kernel_of(request)
    quiet = qbool(request, "quiet")
    reader = AsyncBodyReader(asyncio.get_running_loop(), request.content.read)
    stream = JsonStream(request)
    await stream.start()
    lines, exc = await run_streamed(stream, lambda progress: _svc(kernel).load(reader, progress=progress),
                                    show_progress=not quiet)
    if exc is not None:
        await _drain(request)
        if not isinstance(exc, DockyardError):
            import logging

            logging.getLogger(__name__).error("image load failed", exc_info=exc)
        await stream.error(exc)
    else:
        for line in lines:
            await stream.send({"stream": line + "\n"})
    await stream.resp.write_eof()
    return stream.resp


async def create_image(request: web.Request) -> web.StreamResponse:
    """``POST /images/create``: ``fromSrc=-`` imports the body; ``fromImage`` needs a registry."""
    kernel = kernel_of(request)
    q = request.query
    if q.get("fromImage"):
        puller = kernel.hook.dockyard_image_puller(kernel=kernel)
        if puller is not None and puller.handler is not None:
            return await puller.handler(request)
        name = q["fromImage"] + (f":{q['tag']}" if q.get("tag") else "")
        return error_response(request, 501, f"cannot pull {name}: no registry support yet (install a "
                              "distribution plugin, or use `docker load` / `dockyard image bootstrap busybox`)")
    src = q.get("fromSrc", "")
    if not src:
        raise InvalidArgument("either fromSrc or fromImage must be given")
    if src != "-":
        raise InvalidArgument(f"importing from {src!r} is not supported: send the archive as the body with fromSrc=-")
    from dockyard_api_docker.http import AsyncBodyReader

    reader = AsyncBodyReader(asyncio.get_running_loop(), request.content.read)
    stream = JsonStream(request)
    await stream.start()

    async def work(progress: Callable[[dict[str, Any]], None]) -> Image:
        return await _svc(kernel).import_image(reader, repo=q.get("repo", ""), tag=q.get("tag", ""),
                                               changes=q.getall("changes", []), message=q.get("message", ""),
                                               src=src, progress=progress)

    image, exc = await run_streamed(stream, work, show_progress=False)
    if exc is not None:
        await _drain(request)
        await stream.error(exc)
    else:
        await stream.send({"status": image.id})
    await stream.resp.write_eof()
    return stream.resp


async def bootstrap(request: web.Request) -> web.Response:
    """dockyard extension: build ``busybox:latest`` (or ``name``) from the host's busybox-static;
    ``platform`` (``linux/arm64``): from that architecture's, added to the tag's index."""
    kernel = kernel_of(request)
    name = request.query.get("name", "busybox") or "busybox"
    platform = request.query.get("platform", "")
    img = await (_svc(kernel).bootstrap(name, platform=platform) if platform else _svc(kernel).bootstrap(name))
    return json_response({"Id": img.id, "RepoTags": ordered(img.repo_tags), "Size": img.size},
                         status=201)


async def image_platforms(request: web.Request) -> web.Response:
    """dockyard extension (``dockyard image inspect --platforms``): the index a name points to
    as ``docker manifest inspect`` prints it, each entry with ``Present``/``ImageID`` (is that
    platform here); a single-platform image as a one-entry list."""
    import json

    svc = _svc(kernel_of(request))
    name = request.match_info["name"]
    ix = svc.index_of(name)
    if ix is None:
        img = svc.resolve(name)
        plat = {"architecture": img.architecture, "os": img.os, **({"variant": img.variant} if img.variant else {})}
        return json_response({"Name": name, "Index": "", "MediaType": "", "Tags": ordered(img.repo_tags),
                              "Manifests": [{"digest": img.manifest_digest, "platform": plat, "Present": True,
                                             "ImageID": img.id}]})
    doc = json.loads(svc.content.get(ix.id))
    rows = []
    for raw, entry in zip(doc.get("manifests") or [], ix.manifests, strict=False):
        here = ""
        if entry.image_id:
            try:
                here = svc.get(entry.image_id).id
            except NotFound:
                here = ""
        rows.append({**raw, "Present": bool(here), "ImageID": here})
    return json_response({"Name": name, "Index": ix.id, "MediaType": ix.media_type,
                          "SchemaVersion": doc.get("schemaVersion", 2), "Tags": ordered(ix.repo_tags),
                          "Manifests": rows})


def routes() -> list[ApiRoute]:
    return [
        ApiRoute("GET", "/images/json", list_images, name="images-list"),
        ApiRoute("GET", "/images/get", get_images, name="images-get-many"),
        ApiRoute("POST", "/images/load", load_images, name="images-load"),
        ApiRoute("POST", "/images/create", create_image, name="images-create"),
        ApiRoute("POST", "/images/prune", prune_images, name="images-prune"),
        ApiRoute("GET", "/images/{name:.+}/json", inspect_image, name="images-inspect"),
        ApiRoute("GET", "/images/{name:.+}/history", image_history, name="images-history"),
        ApiRoute("GET", "/images/{name:.+}/get", get_image, name="images-get"),
        ApiRoute("POST", "/images/{name:.+}/tag", tag_image, name="images-tag"),
        ApiRoute("DELETE", "/images/{name:.+}", remove_image, name="images-remove"),
        # dockyard extension, also under /vX.Y/ (the dockyard client always sends the prefix)
        ApiRoute("POST", "/dockyard/images/bootstrap", bootstrap, name="dockyard-images-bootstrap"),
        ApiRoute("GET", "/dockyard/images/{name:.+}/platforms", image_platforms, name="dockyard-images-platforms"),
    ]


__all__ = ["inspect", "progress_bar", "routes", "summary"]
_ = NotFound
