"""Pull and push: registry client + image store, reporting dockerd's JSON progress messages.

Each operation has a *resolve* step that raises typed errors before anything is streamed (so
the API answers ``404 manifest for X not found`` with a status code) and a *run* step that
reports through ``emit(message)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dockyard.content import DigestMismatch
from dockyard.errors import InvalidArgument, NotFound
from dockyard.reference import Reference
from dockyard_distribution import progress as pm
from dockyard_distribution.client import Manifest, RegistryClient, gather_limited
from dockyard_distribution.mediatypes import (
    DOCKER_CONFIG,
    DOCKER_MANIFEST,
    INDEXES,
    LAYER_COMPRESSION,
    Platform,
    check_manifest_type,
    select_manifest,
)
from dockyard_distribution.store import ImageStore, Unpacker

log = logging.getLogger(__name__)
Emit = Callable[[dict[str, Any]], None]
DEFAULT_REGISTRY_HOST = "registry-1.docker.io"


def registry_host(ref: Reference) -> str:
    """The host to contact for ``ref`` (docker.io's API lives on registry-1.docker.io)."""
    return DEFAULT_REGISTRY_HOST if ref.domain == "docker.io" else ref.domain


def chain_ids(diff_ids: list[str]) -> list[str]:
    import hashlib

    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out


class _Throttle:
    """Emit a progress line per layer at most every ``interval`` seconds (and at the end)."""

    def __init__(self, emit: Emit, status: str, id_: str, total: int, interval: float = 0.1) -> None:
        self.emit, self.status, self.id, self.total, self.interval = emit, status, id_, total, interval
        self.last = 0.0

    def __call__(self, current: int) -> None:
        now = time.monotonic()
        if now - self.last >= self.interval or current >= self.total > 0:
            self.last = now
            self.emit(pm.progress(self.status, self.id, current, self.total))


# ------------------------------------------------------------------------------------- pull
@dataclass
class PullPlan:
    ref: Reference
    top: Manifest  # what the tag (or digest) names: maybe an index
    manifest: Manifest  # the image manifest for the chosen platform
    config_raw: bytes
    layers: list[dict[str, Any]]
    diff_ids: list[str]
    platform: Platform | None = None

    @property
    def display(self) -> str:
        return self.ref.familiar()


async def resolve_pull(client: RegistryClient, ref: Reference, platform: Platform | None) -> PullPlan:
    """Fetch and check the manifest(s) and the config; NotFound for a missing manifest."""
    want = platform or _host()
    tag_or_digest = ref.digest or ref.tag or "latest"
    top = await client.get_manifest(ref.path, tag_or_digest, display=ref.familiar())
    check_manifest_type(top.media_type, ref.familiar())
    manifest = top
    if top.media_type in INDEXES:
        desc = select_manifest(top.json(), want, ref.familiar())
        manifest = await client.get_manifest(ref.path, desc["digest"], display=f"{ref.familiar()}")
        check_manifest_type(manifest.media_type, ref.familiar())
        if manifest.media_type in INDEXES:
            raise InvalidArgument(f"{ref.familiar()}: nested manifest lists are not supported")
    doc = manifest.json()
    config = doc.get("config")
    layers = doc.get("layers")
    if not isinstance(config, dict) or not isinstance(layers, list):
        raise InvalidArgument(f"{ref.familiar()}: manifest {manifest.digest} lacks config or layers")
    for lay in layers:
        if not isinstance(lay, dict) or not isinstance(lay.get("digest"), str):
            raise InvalidArgument(f"{ref.familiar()}: manifest {manifest.digest} has an invalid layer descriptor")
        mt = lay.get("mediaType") or ""
        if mt and mt not in LAYER_COMPRESSION:
            raise InvalidArgument(f"{ref.familiar()}: unsupported layer media type {mt!r}")
    config_raw = await client.get_blob_bytes(ref.path, config["digest"])
    try:
        cdoc = json.loads(config_raw)
        diff_ids = list(cdoc["rootfs"]["diff_ids"])
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument(f"{ref.familiar()}: invalid image config {config['digest']}: {exc}") from exc
    if len(diff_ids) != len(layers):
        raise InvalidArgument(f"{ref.familiar()}: the manifest has {len(layers)} layers but the config "
                              f"{len(diff_ids)} diff IDs")
    if platform is not None and top.media_type not in INDEXES:
        have = Platform(str(cdoc.get("os") or ""), str(cdoc.get("architecture") or ""),
                        str(cdoc.get("variant") or ""))
        if not platform.matches(have):
            raise NotFound(f"image with reference {ref.familiar()} was found but does not match the "
                           f"specified platform: wanted {platform}, actual: {have.normalized()}")
    return PullPlan(ref, top, manifest, config_raw, layers, diff_ids, platform)


def _host() -> Platform:
    from dockyard_distribution.mediatypes import host_platform

    return host_platform()


async def run_pull(client: RegistryClient, plan: PullPlan, store: ImageStore, emit: Emit,
                   final_status: bool = True) -> tuple[Any, bool]:
    """Download what is missing, install the image, report like dockerd. Returns the image and
    whether anything changed; ``final_status`` False leaves out the ``Status:`` line (all-tags
    pulls print one for the repository)."""
    ref = plan.ref
    await check_policy(store.kernel, plan)
    emit(pm.status(f"Pulling from {ref.path}", ref.digest or ref.tag or "latest", detail=False))
    chain = chain_ids(plan.diff_ids)
    present = [await store.has_layer(c) for c in chain]
    ids = [pm.short_id(lay["digest"]) for lay in plan.layers]
    by_diff_short = {d[7:19]: ids[i] for i, d in enumerate(plan.diff_ids)}
    announced: set[str] = set()
    for i, short in enumerate(ids):
        if short in announced:
            continue
        announced.add(short)
        emit(pm.status("Already exists" if present[i] else "Pulling fs layer", short))
    images_content = store.images.content
    results: dict[int, tuple[str, int, Path]] = {}
    with store.staging() as staging:
        fetched: dict[str, asyncio.Future[tuple[str, int, Path]]] = {}

        async def fetch(i: int) -> None:
            lay, diff_id = plan.layers[i], plan.diff_ids[i]
            if present[i]:
                results[i] = (diff_id, 0, images_content.path(diff_id))
                return
            digest = lay["digest"]
            if digest in fetched:  # the same blob twice in one image
                results[i] = await fetched[digest]
                return
            fut: asyncio.Future[tuple[str, int, Path]] = asyncio.get_running_loop().create_future()
            fetched[digest] = fut
            try:
                size = lay.get("size") if isinstance(lay.get("size"), int) else None
                tar = staging / f"{i}.tar"
                unpacker = Unpacker(tar)  # unpacks while downloading; verified below
                try:
                    if client.download_slots.locked():
                        emit(pm.status("Waiting", ids[i]))
                    async with client.download_slots:
                        await client.download_blob(ref.path, digest, size, unpacker,
                                                   _Throttle(emit, "Downloading", ids[i], size or 0))
                    emit(pm.status("Verifying Checksum", ids[i]))
                    got, usize = await asyncio.to_thread(unpacker.finish)
                finally:
                    unpacker.close()
                emit(pm.status("Download complete", ids[i]))
                if got != diff_id:
                    raise DigestMismatch(diff_id, got, f"layer {digest} of {ref.familiar()} unpacks to {got}, "
                                         f"but the image config expects {diff_id}")
                store.metadata.record(diff_id, digest, int(size or 0), lay.get("mediaType") or "",
                                      f"{client.host}/{ref.path}")
                results[i] = (diff_id, usize, tar)
                fut.set_result(results[i])
            except BaseException as exc:
                if not fut.done():
                    fut.set_exception(exc)
                    fut.exception()  # mark retrieved
                raise

        await gather_limited([fetch(i) for i in range(len(plan.layers))])

        def on_install(msg: dict[str, Any]) -> None:
            short = by_diff_short.get(str(msg.get("id") or ""))
            if short is None:
                return
            if msg.get("done"):
                emit(pm.status("Pull complete", short))
            else:
                emit(pm.progress("Extracting", short, int(msg.get("current") or 0), int(msg.get("total") or 0)))

        tag = str(ref) if ref.tag and not ref.digest else None
        repo_digest = f"{ref.name}@{plan.top.digest}"
        image, changed = await store.install(plan.config_raw, [results[i] for i in range(len(plan.layers))],
                                             plan.manifest.body, tag, repo_digest, on_install)
        if plan.top.media_type in INDEXES:  # keep the index: the tag names every platform, present or not
            await store.images.record_index(plan.top.body, plan.top.media_type, [tag] if tag else [],
                                            {plan.manifest.digest: image.id})
    emit(pm.status(f"Digest: {plan.top.digest}"))
    if final_status:
        emit(final_line(changed, ref.familiar()))
    store.emit("pull", image, ref.familiar())
    return image, changed


async def check_policy(kernel: Any, plan: PullPlan) -> None:
    """The image policy (core's ``ImagePolicy``, when a plugin offers one) judges the resolved
    top-level digest before any layer is fetched: a refusal stores nothing."""
    from dockyard.specs.storage import ImageCheck, ImagePolicy

    policy = kernel.provided().get(ImagePolicy)
    if policy is not None:
        ref = plan.ref
        name = f"{ref.name}:{ref.tag}" if ref.tag and not ref.digest else ref.name
        await policy.check(kernel, ImageCheck(name, plan.top.digest, "pull"))


def final_line(changed: bool, name: str) -> dict[str, Any]:
    if changed:
        return pm.status(f"Status: Downloaded newer image for {name}")
    return pm.status(f"Status: Image is up to date for {name}")


# ------------------------------------------------------------------------------------- push
@dataclass
class PushPlan:
    ref: Reference  # with the tag to push
    image: Any
    config_raw: bytes
    diff_ids: list[str] = field(default_factory=list)


def resolve_push(store: ImageStore, ref: Reference) -> PushPlan:
    image = store.find(str(ref))
    if image is None:
        raise NotFound(f"An image does not exist locally with the tag: {ref.familiar_name}")
    return PushPlan(ref, image, store.config_raw(image), list(image.layers))


async def run_push(client: RegistryClient, plan: PushPlan, store: ImageStore, emit: Emit,
                   header: bool = True, by_digest: bool = False) -> dict[str, Any]:
    """Upload missing blobs (HEAD, mount, upload), then the manifest; returns the ``aux``.
    ``by_digest``: the manifest is stored under its digest, not the tag (a platform of an index
    pushed next; no digest line, no ``aux`` message)."""
    ref = plan.ref
    repo = ref.path
    host = client.host
    if header:
        emit(pm.status(f"The push refers to repository [{ref.name}]"))
    unique: list[str] = []
    for d in plan.diff_ids:
        if d not in unique:
            unique.append(d)
    for d in reversed(unique):
        emit(pm.status("Preparing", d[7:19]))
    descriptors: dict[str, dict[str, Any]] = {}

    async def push_layer(diff_id: str) -> None:
        short = diff_id[7:19]
        async with client.upload_slots:
            known = {d: e for d, e in store.metadata.blobs(diff_id).items()
                     if LAYER_COMPRESSION.get(e.get("mediaType") or "") == "gzip"}
            # 1. a blob this registry already has in the target repository
            for digest, e in known.items():
                if f"{host}/{repo}" in e.get("repos", []) and await client.blob_exists(repo, digest):
                    descriptors[diff_id] = _desc(e.get("mediaType"), digest, e["size"])
                    emit(pm.status("Layer already exists", short))
                    return
            # 2. cross-repository mount from another repository of the same registry
            for digest, e in known.items():
                for src in e.get("repos", []):
                    src_host, _, src_repo = src.partition("/")
                    if src_host != host or src_repo == repo:
                        continue
                    emit(pm.status(f"Mounting from {src_repo}", short))
                    try:
                        location = await client.mount_blob(repo, digest, src_repo)
                    except Exception as exc:  # noqa: BLE001 - fall back to an upload
                        log.info("mount of %s from %s failed: %s", digest, src_repo, exc)
                        continue
                    if location is None:
                        store.metadata.record(diff_id, digest, e["size"], e.get("mediaType") or "", f"{host}/{repo}")
                        descriptors[diff_id] = _desc(e.get("mediaType"), digest, e["size"])
                        emit(pm.status(f"Mounted from {src_repo}", short))
                        return
            # 3. our own compressed blob: HEAD, else upload it
            blob = store.compressed(diff_id)
            if blob is not None and await client.blob_exists(repo, blob.digest):
                emit(pm.status("Layer already exists", short))
            elif blob is not None:
                assert blob.path is not None
                await client.upload_blob(repo, blob.digest, blob.size, blob.path,
                                         _Throttle(emit, "Pushing", short, blob.size))
                emit(pm.status("Pushed", short))
            else:
                # 4. compress while uploading (progress in uncompressed bytes, as dockerd)
                total = await asyncio.to_thread(store.layer_size, diff_id)
                gz = store.gzip_stream(diff_id, _Throttle(emit, "Pushing", short, total))

                def digest_of() -> str:
                    assert gz.result is not None, "the upload ended before the layer was compressed"
                    return gz.result.digest

                await client.upload_stream(repo, gz, digest_of)
                assert gz.result is not None
                blob = gz.result
                emit(pm.status("Pushed", short))
            descriptors[diff_id] = _desc(blob.media_type, blob.digest, blob.size)
            store.metadata.record(diff_id, blob.digest, blob.size, blob.media_type, f"{host}/{repo}")

    await gather_limited([push_layer(d) for d in unique])
    config_digest = plan.image.id
    if not await client.blob_exists(repo, config_digest):
        with store.staging() as staging:
            path = staging / "config.json"
            path.write_bytes(plan.config_raw)
            await client.upload_blob(repo, config_digest, len(plan.config_raw), path)
    manifest = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": DOCKER_CONFIG, "size": len(plan.config_raw), "digest": config_digest},
        "layers": [descriptors[d] for d in plan.diff_ids],
    }
    body = json.dumps(manifest, indent=3).encode()
    tag = ref.tag or "latest"
    where = "sha256:" + hashlib.sha256(body).hexdigest() if by_digest else tag
    digest = await client.put_manifest(repo, where, body, DOCKER_MANIFEST)
    await push_attachments(store.kernel, client, repo, plan.image, digest, emit)
    aux = {"Tag": tag, "Digest": digest, "Size": len(body)}
    if not by_digest:
        emit(pm.status(f"{tag}: digest: {digest} size: {len(body)}"))
        emit({"progressDetail": {}, "aux": aux})
    with contextlib.suppress(Exception):
        image = plan.image
        rd = f"{ref.name}@{digest}"
        if rd not in image.repo_digests:
            image.repo_digests.append(rd)
            store.images.store_put(image)
    store.emit("push", plan.image, ref.familiar())
    return aux


async def push_attachments(kernel: Any, client: RegistryClient, repo: str, image: Any, digest: str,
                           emit: Emit) -> None:
    """What a plugin keeps beside the image (core's ``ImageAttachments``: provenance's build
    attestations) goes up once the manifest is stored, before the push is answered."""
    from dockyard.specs.storage import ImageAttachments
    from dockyard_distribution.sessions import ClientSession

    follower = kernel.provided().get(ImageAttachments)
    if follower is not None:
        for line in await follower.pushed(ClientSession(client), repo, image, digest):
            emit(pm.status(line))


def _desc(media_type: str | None, digest: str, size: int) -> dict[str, Any]:
    from dockyard_distribution.mediatypes import DOCKER_LAYER

    del media_type  # every layer we reuse or make is gzip: docker's schema 2 layer type
    return {"mediaType": DOCKER_LAYER, "size": int(size), "digest": digest}
