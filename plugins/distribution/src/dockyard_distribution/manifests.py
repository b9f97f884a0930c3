"""``dockyard manifest``: podman's verbs for image indexes assembled here and pushed to a
registry (issue 19 item 1), served as the extension API ``/dockyard/v1/manifests``.

A local manifest list is an :class:`~dockyard.services.images.ImageIndex` the image store keeps
under the list's name (``source`` "manifest"), through the ``Images`` interface only:

- ``create NAME [IMAGE...]`` and ``add NAME IMAGE`` (``--os/--arch/--variant`` override what
  the image's config says; ``--all`` adds every platform of a multi-platform IMAGE) list local
  images by an OCI manifest of their uncompressed layers; each change is a new index (its
  digest changes) the name moves to, as podman's lists.
- ``inspect NAME``: the index document. ``rm NAME``: ``docker rmi`` of the name (images keep
  their own tags).
- ``push NAME [DEST]``: every platform present is pushed by digest (layers gzip-compressed,
  mounted or skipped as a ``docker push`` does), then a Docker manifest list of the pushed
  manifests under DEST's tag. A platform listed but absent here is left out and said so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from dockyard.content import digest_bytes
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.server import KERNEL_KEY
from dockyard.services.images import oci_manifest
from dockyard_distribution import progress as pm

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


def _tag(name: str) -> str:
    from dockyard_distribution.api import _parse

    ref = _parse(name)
    if ref.digest:
        raise InvalidArgument(f"{name}: a manifest list is named by a tag, not a digest")
    return str(ref)


def _entry(images: Any, ref: str, os_: str = "", arch: str = "", variant: str = "") -> tuple[dict[str, Any], str]:
    """The index descriptor of local image ``ref`` and its image ID."""
    try:
        img = images.resolve(ref)
    except NotFound:
        raise NotFound(f"{ref}: no such image here (pull it first, with --platform for another platform)") from None
    raw = oci_manifest(images.content, img)
    plat: dict[str, Any] = {"architecture": arch or img.architecture, "os": os_ or img.os or "linux"}
    v = variant if (arch or variant) else img.variant
    if v:
        plat["variant"] = v
    return {"mediaType": OCI_MANIFEST, "digest": digest_bytes(raw), "size": len(raw), "platform": plat}, img.id


def _platform_entries(images: Any, ref: str) -> list[tuple[dict[str, Any], str]]:
    """Every present platform of the index ``ref`` names (``add --all``)."""
    ix = images.index_of(ref)
    if ix is None:
        return [_entry(images, ref)]
    out = []
    for e in ix.manifests:
        if not e.image_id:
            continue
        try:
            img = images.get(e.image_id)
        except NotFound:
            continue
        desc, image_id = _entry(images, img.id)
        if e.platform:
            desc["platform"] = dict(e.platform)
        out.append((desc, image_id))
    return out


async def _record(images: Any, tag: str, rows: list[tuple[dict[str, Any], str]]) -> Any:
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [d for d, _ in rows]},
                     separators=(",", ":")).encode()
    return await images.record_index(raw, OCI_INDEX, [tag], {d["digest"]: i for d, i in rows}, source="manifest")


async def create(kernel: Any, name: str, refs: list[str], all_platforms: bool = False) -> Any:
    images = kernel.images
    tag = _tag(name)
    if images.index_of(tag) is not None:
        raise Conflict(f"{name}: a manifest list of that name exists (dockyard manifest rm {name})")
    try:
        images.resolve(tag)
    except NotFound:
        pass
    else:
        raise Conflict(f"{name}: an image has that name; pick another for the manifest list")
    rows: list[tuple[dict[str, Any], str]] = []
    for ref in refs:
        rows += _platform_entries(images, ref) if all_platforms else [_entry(images, ref)]
    return await _record(images, tag, rows)


def _current(images: Any, name: str) -> tuple[str, Any, list[tuple[dict[str, Any], str]]]:
    tag = _tag(name)
    ix = images.index_of(tag)
    if ix is None:
        raise NotFound(f"{name}: no such manifest list")
    doc = json.loads(images.content.get(ix.id))
    rows = [(d, e.image_id) for d, e in zip(doc.get("manifests") or [], ix.manifests, strict=False)]
    return tag, ix, rows


async def add(kernel: Any, name: str, ref: str, os_: str = "", arch: str = "", variant: str = "",
              all_platforms: bool = False) -> Any:
    images = kernel.images
    tag, _ix, rows = _current(images, name)
    new = _platform_entries(images, ref) if all_platforms else [_entry(images, ref, os_, arch, variant)]
    digests = {d["digest"] for d, _ in new}
    return await _record(images, tag, [r for r in rows if r[0]["digest"] not in digests] + new)


async def push(kernel: Any, name: str, dest: str, auth: Any, emit: Callable[[dict[str, Any]], None]) -> str:
    from dockyard_distribution.api import _client, _parse
    from dockyard_distribution.store import ImageStore
    from dockyard_distribution.transfer import PushPlan, run_push

    images = kernel.images
    _tag_, ix, rows = _current(images, name)
    ref = _parse(dest or name)
    if ref.digest:
        raise InvalidArgument("cannot push a manifest list to a digest reference")
    store = ImageStore(kernel)
    client = _client(kernel, ref, auth)
    pushed: list[dict[str, Any]] = []
    try:
        for i, (desc, image_id) in enumerate(rows):
            plat = desc.get("platform") or {}
            shown = "/".join(p for p in (plat.get("os"), plat.get("architecture"), plat.get("variant")) if p)
            try:
                img = images.get(image_id) if image_id else None
            except NotFound:
                img = None
            if img is None:
                emit(pm.status(f"Skipping {shown}: not here ({desc['digest'][:19]})"))
                continue
            aux = await run_push(client, PushPlan(ref, img, store.config_raw(img), list(img.layers)), store, emit,
                                 header=i == 0, by_digest=True)
            pushed.append({"mediaType": DOCKER_MANIFEST, "digest": aux["Digest"], "size": aux["Size"],
                           "platform": plat})
        if not pushed:
            raise NotFound(f"{name}: no platform of the list is here to push")
        body = json.dumps({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": pushed}, indent=3).encode()
        tag = ref.tag or "latest"
        digest = await client.put_manifest(ref.path, tag, body, DOCKER_LIST)
    finally:
        await client.close()
    emit(pm.status(f"{tag}: digest: {digest} size: {len(body)}"))
    emit({"progressDetail": {}, "aux": {"Tag": tag, "Digest": digest, "Size": len(body)}})
    return digest


# ------------------------------------------------------------------------------------- API
def _shape(ix: Any) -> dict[str, Any]:
    return {"Id": ix.id, "MediaType": ix.media_type, "Tags": ix.repo_tags,
            "Manifests": [{"digest": e.digest, "platform": e.platform, "ImageID": e.image_id} for e in ix.manifests]}


async def _json_body(request: web.Request) -> dict[str, Any]:
    if not request.can_read_body:
        return {}
    try:
        doc = await request.json()
    except ValueError as exc:
        raise InvalidArgument(f"invalid JSON body: {exc}") from exc
    if not isinstance(doc, dict):
        raise InvalidArgument("the body must be a JSON object")
    return doc


async def create_route(request: web.Request) -> web.Response:
    doc = await _json_body(request)
    name = str(doc.get("Name") or request.query.get("name") or "")
    if not name:
        raise InvalidArgument("a manifest list needs a name")
    ix = await create(request.app[KERNEL_KEY], name, [str(i) for i in doc.get("Images") or []],
                      bool(doc.get("All")))
    return web.json_response(_shape(ix), status=201)


async def add_route(request: web.Request) -> web.Response:
    doc = await _json_body(request)
    if not doc.get("Image"):
        raise InvalidArgument("Image is required")
    ix = await add(request.app[KERNEL_KEY], request.match_info["name"], str(doc["Image"]), str(doc.get("Os") or ""),
                   str(doc.get("Architecture") or ""), str(doc.get("Variant") or ""), bool(doc.get("All")))
    return web.json_response(_shape(ix))


async def inspect_route(request: web.Request) -> web.Response:
    images = request.app[KERNEL_KEY].images
    _tag_, ix, _rows = _current(images, request.match_info["name"])
    return web.json_response(json.loads(images.content.get(ix.id)))


async def remove_route(request: web.Request) -> web.Response:
    images = request.app[KERNEL_KEY].images
    tag, _ix, _rows = _current(images, request.match_info["name"])
    return web.json_response(await images.remove(tag))


async def push_route(request: web.Request) -> web.StreamResponse:
    from dockyard_distribution.api import _auth, stream

    kernel = request.app[KERNEL_KEY]
    name = request.match_info["name"]
    _current(kernel.images, name)  # NotFound before streaming
    dest = request.query.get("destination", "")
    auth = _auth(request)
    return await stream(request, lambda emit: push(kernel, name, dest, auth, emit))
