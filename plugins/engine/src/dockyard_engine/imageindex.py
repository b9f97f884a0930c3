"""Multi-platform images in the engine's image store: image indexes (OCI indexes and Docker
manifest lists) kept beside the per-platform images (issue 19).

Model (containerd's image store seen through classic dockerd's):

- An :class:`~dockyard.services.images.ImageIndex` record per index digest holds every
  platform's entry, present here (``image_id`` names a recorded image) or absent, and the tags
  that name it; the index bytes are a content-store blob (a push or a save keeps the digest).
- Each platform present is an ordinary :class:`~dockyard.model.Image` (keyed by its config
  digest, as every image here) with the repository digest ``name@<index digest>``, so it is
  never dangling. The tag itself is also on the member this host runs best (containerd's
  ``Only(host)`` over the present members), so everything that reads one image per tag
  (``docker images``, ``inspect``, ``run`` without ``--platform``, ``save``) keeps working;
  ``--platform`` picks another member through :func:`resolve_platform`.
- ``docker rmi NAME:TAG`` removes the tag from the index; when no tag of that repository is
  left on it, its members lose ``name@<index digest>`` and those no longer referenced or used
  are deleted (dockerd's rule for digest references of an untagged repository). An index no
  tag or repository digest names is dropped by ``gc``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING, Any

from dockyard import platforms
from dockyard.content import digest_bytes
from dockyard.errors import InvalidArgument, NotFound
from dockyard.model import Image
from dockyard.reference import InvalidReference, parse_normalized
from dockyard.services.images import ImageIndex, IndexEntry, oci_manifest

if TYPE_CHECKING:
    from dockyard_engine.images import ImageService

INDEX_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def entries_of(doc: dict[str, Any]) -> list[IndexEntry]:
    """The descriptors of an index document (malformed ones refused)."""
    out = []
    for d in doc.get("manifests") or []:
        if not isinstance(d, dict) or not isinstance(d.get("digest"), str):
            raise InvalidArgument("invalid image index: a manifest descriptor without a digest")
        out.append(IndexEntry(digest=d["digest"], media_type=str(d.get("mediaType") or ""),
                              size=int(d.get("size") or 0),
                              platform=dict(d.get("platform") or {}) if isinstance(d.get("platform"), dict) else {},
                              annotations={str(k): str(v) for k, v in (d.get("annotations") or {}).items()}))
    return out


def is_attestation(entry: IndexEntry) -> bool:
    """BuildKit's attestation manifests (``unknown/unknown``, ``vnd.docker.reference.type``)."""
    return "vnd.docker.reference.type" in entry.annotations or entry.platform.get("os") == "unknown"


def entry_platform(entry: IndexEntry) -> platforms.Platform:
    return platforms.Platform.from_descriptor(entry.platform)


def image_platform(image: Image) -> platforms.Platform:
    return platforms.Platform(image.os or "linux", image.architecture or "", image.variant or "")


def present(svc: ImageService, entry: IndexEntry) -> Image | None:
    if not entry.image_id:
        return None
    try:
        return svc.store.get(Image, entry.image_id)
    except NotFound:
        return None


def members(svc: ImageService, ix: ImageIndex) -> list[tuple[IndexEntry, Image]]:
    """The platforms of ``ix`` present here, with their images (attestations left out)."""
    out = []
    for e in ix.manifests:
        img = present(svc, e)
        if img is not None and not is_attestation(e):
            out.append((e, img))
    return out


def index_of(svc: ImageService, ref: str) -> ImageIndex | None:
    """The index ``ref`` names: an index digest, ``name@<index digest>``, or a tag on it."""
    indexes = svc.store.list(ImageIndex)
    if not indexes:
        return None
    if ref.startswith("sha256:"):
        return next((ix for ix in indexes if ix.id == ref), None)
    try:
        r = parse_normalized(ref)
    except InvalidReference:
        return None
    if r.digest:
        want = f"{r.name}@{r.digest}"
        return next((ix for ix in indexes if want in ix.repo_digests), None)
    return next((ix for ix in indexes if str(r) in ix.repo_tags), None)


def resolve_platform(svc: ImageService, ref: str, platform: str) -> Image:
    """The image ``ref`` names for ``platform``: the best present member of its index
    (containerd's ``Only``: exact, then what the platform also runs), else the image ``ref``
    names when its own platform matches; NotFound worded as dockerd otherwise."""
    want = platforms.parse(platform)
    match = platforms.only(want)
    ix = index_of(svc, ref)
    if ix is not None:
        found = match.best(members(svc, ix), key=lambda m: entry_platform(m[0]) if m[0].platform
                           else image_platform(m[1]))
        if found is not None:
            return found[1]
    image = svc.resolve(ref)
    actual = image_platform(image)
    if match.match(actual):
        return image
    raise NotFound(platforms.mismatch_message(ref, want, platforms.normalize(actual)))


def _repo(tag: str) -> str:
    return tag.rsplit(":", 1)[0]


async def record_index(svc: ImageService, raw: bytes, media_type: str, tags: list[str], members_now: dict[str, str],
                       source: str = "pull") -> ImageIndex:
    """See :meth:`dockyard.services.images.Images.record_index`."""
    digest = digest_bytes(raw)
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"invalid image index {digest}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("manifests"), list):
        raise InvalidArgument(f"invalid image index {digest}: no manifests")
    entries = entries_of(doc)
    content = svc.content
    if not content.exists(digest):
        await asyncio.to_thread(content.put, raw, digest)
    async with svc._lock:
        try:
            ix = svc.store.get(ImageIndex, digest)
        except NotFound:
            ix = ImageIndex(id=digest, media_type=media_type or str(doc.get("mediaType") or INDEX_TYPES[0]),
                            manifests=entries, source=source)
        for e in ix.manifests:
            if e.digest in members_now:
                e.image_id = members_now[e.digest]
        images = {img.id: img for img in svc.list()}
        changed: dict[str, Any] = {}
        gone: set[str] = set()  # name@<old index> of a repository whose last tag moved here
        for other in svc.store.list(ImageIndex):
            if other.id != ix.id and set(tags) & set(other.repo_tags):
                other.repo_tags = [t for t in other.repo_tags if t not in tags]
                left = {_repo(t) for t in other.repo_tags}
                for t in tags:
                    if _repo(t) not in left:
                        gone.add(f"{_repo(t)}@{other.id}")
                other.repo_digests = [d for d in other.repo_digests if d not in gone]
                changed[other.id] = other
        for img in images.values():  # the old index's images lose its digest (dangling if nothing else)
            if set(img.repo_digests) & gone:
                img.repo_digests = [d for d in img.repo_digests if d not in gone]
                changed[img.id] = img
        ix.repo_tags += [t for t in tags if t not in ix.repo_tags]
        ix.repo_digests += [d for d in dict.fromkeys(f"{_repo(t)}@{digest}" for t in ix.repo_tags)
                            if d not in ix.repo_digests]
        held = [(e, images[e.image_id]) for e in ix.manifests if e.image_id in images and not is_attestation(e)]
        for _e, img in held:
            for rd in ix.repo_digests:
                if rd not in img.repo_digests:
                    img.repo_digests.append(rd)
                    changed[img.id] = img
        face = platforms.default_matcher().best(held, key=lambda m: entry_platform(m[0]) if m[0].platform
                                                 else image_platform(m[1]))
        if face is None and held:  # nothing here runs natively: the tag stays where it is, else the newest
            holders = [img for _e, img in held if set(ix.repo_tags) & set(img.repo_tags)]
            newest = images.get(next(iter(members_now.values()), ""))
            face = (None, holders[0] if holders else newest or held[0][1])
        if face is not None:
            target = face[1]
            for tag in ix.repo_tags:
                for img in images.values():
                    if img.id != target.id and tag in img.repo_tags:
                        img.repo_tags.remove(tag)
                        changed[img.id] = img
                if tag not in target.repo_tags:
                    target.repo_tags.append(tag)
                    changed[target.id] = target
        with svc.store.transaction() as tx:
            for obj in changed.values():
                tx.put(obj)
            tx.put(ix)
    return ix


def untag(svc: ImageService, tag: str) -> set[str]:
    """Take ``tag`` off the index holding it; returns the repository digests
    (``name@<index digest>``) its members lose because no tag of that repository is left on
    the index. Call under the image lock."""
    gone: set[str] = set()
    for ix in svc.store.list(ImageIndex):
        if tag not in ix.repo_tags:
            continue
        ix.repo_tags.remove(tag)
        repo = _repo(tag)
        if not any(_repo(t) == repo for t in ix.repo_tags):
            rd = f"{repo}@{ix.id}"
            if rd in ix.repo_digests:
                ix.repo_digests.remove(rd)
            gone.add(rd)
        with svc.store.transaction() as tx:
            tx.put(ix)
    return gone


def orphans(svc: ImageService, gone: set[str], skip: str) -> list[Image]:
    """Member images that lose the digests ``gone`` (updated in the store); those left with no
    reference at all are returned, for the caller to delete when unused."""
    out = []
    if not gone:
        return out
    for img in svc.list():
        if img.id == skip or not set(img.repo_digests) & gone:
            continue
        img.repo_digests = [d for d in img.repo_digests if d not in gone]
        svc.store_put(img)
        if not img.repo_tags and not img.repo_digests:
            out.append(img)
    return out


def gc_indexes(svc: ImageService) -> set[str]:
    """Drop indexes no tag or repository digest names (their images stay while they have
    references of their own); returns the blobs to keep (the index bytes of those left). Call
    under the image lock."""
    keep: set[str] = set()
    for ix in svc.store.list(ImageIndex):
        if not ix.repo_tags and not ix.repo_digests:
            with contextlib.suppress(NotFound), svc.store.transaction() as tx:
                tx.delete(ImageIndex, ix.id)
            continue
        keep.add(ix.id)
    return keep


async def add_to_tag(svc: ImageService, tag: str, image: Image, source: str = "local") -> ImageIndex:
    """Make ``tag`` (normalized) name an index that holds ``image`` besides what it names now:
    the platforms of its index, or the single image it names (an entry of the same platform as
    ``image`` is replaced). What a bootstrap or a build for another platform calls; the tag's
    image stays the member this host runs best."""
    rows: list[tuple[dict[str, Any], str]] = []
    ix = index_of(svc, tag)
    if ix is not None:
        doc = json.loads(svc.content.get(ix.id))
        rows = [(d, e.image_id) for d, e in zip(doc.get("manifests") or [], ix.manifests, strict=False)]
    else:
        with contextlib.suppress(NotFound):
            current = svc.resolve(tag)
            if current.id != image.id:
                rows = [_descriptor(svc, current)]
    new = _descriptor(svc, image)
    plat = platforms.normalize(image_platform(image))
    rows = [r for r in rows if r[0]["digest"] != new[0]["digest"]
            and platforms.normalize(platforms.Platform.from_descriptor(r[0].get("platform") or {})) != plat]
    rows.append(new)
    raw = json.dumps({"schemaVersion": 2, "mediaType": INDEX_TYPES[0], "manifests": [d for d, _ in rows]},
                     separators=(",", ":")).encode()
    return await record_index(svc, raw, INDEX_TYPES[0], [tag], {d["digest"]: i for d, i in rows if i}, source)


def _descriptor(svc: ImageService, image: Image) -> tuple[dict[str, Any], str]:
    raw = oci_manifest(svc.content, image)
    return ({"mediaType": OCI_MANIFEST, "digest": digest_bytes(raw), "size": len(raw),
             "platform": image_platform(image).descriptor()}, image.id)


# ------------------------------------------------------------------------------------ save


def _manifest_of(svc: ImageService, image: Image) -> bytes:
    return oci_manifest(svc.content, image)


def save_plan(svc: ImageService, chosen: list[tuple[Image, list[str]]]) -> list[tuple[Image, list[str], ImageIndex | None]]:
    """Each chosen image with its tags and the index its tags name (None: a single-platform image)."""
    out = []
    for image, tags in chosen:
        ix = next((x for x in (index_of(svc, t) for t in tags) if x is not None), None)
        out.append((image, tags, ix))
    return out


def write_layout(svc: ImageService, plan: list[tuple[Image, list[str], ImageIndex | None]], tf: Any,
                 add_bytes: Any, familiar: Any) -> None:
    """An OCI image layout beside a docker-archive's ``manifest.json`` in one tar (Docker 25's
    ``docker save``): ``blobs/sha256/`` holds configs, uncompressed layers, a manifest per image
    and, for a multi-platform tag, an index of the platforms present here; ``index.json`` names
    each tag's index (or manifest) with ``io.containerd.image.name`` and
    ``org.opencontainers.image.ref.name``; ``manifest.json`` lists each tag's own image (read by
    any docker load) with ``blobs/`` paths, so no layer is written twice."""
    content = svc.content
    written: set[str] = set()

    def blob(data: bytes | None = None, digest: str = "") -> tuple[str, int]:
        d = digest or digest_bytes(data or b"")
        name = "blobs/sha256/" + d[7:]
        if d not in written:
            written.add(d)
            if data is not None:
                add_bytes(tf, name, data)
            else:
                import tarfile

                path = content.path(d)
                ti = tarfile.TarInfo(name)
                ti.size, ti.mode = path.stat().st_size, 0o644
                with open(path, "rb") as f:
                    tf.addfile(ti, f)
        return d, (len(data) if data is not None else content.size(d))

    def image_blobs(image: Image) -> tuple[str, int]:
        blob(digest=image.id)
        for d in image.layers:
            blob(digest=d)
        return blob(_manifest_of(svc, image))

    top: list[dict[str, Any]] = []
    docker: list[dict[str, Any]] = []
    for image, tags, ix in plan:
        mdigest, msize = image_blobs(image)
        docker.append({"Config": "blobs/sha256/" + image.id[7:], "RepoTags": [familiar(t) for t in tags] or None,
                       "Layers": ["blobs/sha256/" + d[7:] for d in image.layers]})
        desc: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": mdigest, "size": msize}
        if ix is not None:
            rows = []
            for e, member in members(svc, ix):
                d, n = image_blobs(member)
                row: dict[str, Any] = {"mediaType": OCI_MANIFEST, "digest": d, "size": n,
                                       "platform": e.platform or {"architecture": member.architecture,
                                                                  "os": member.os}}
                if e.annotations:
                    row["annotations"] = e.annotations
                rows.append(row)
            raw = json.dumps({"schemaVersion": 2, "mediaType": INDEX_TYPES[0], "manifests": rows},
                             separators=(",", ":")).encode()
            d, n = blob(raw)
            desc = {"mediaType": INDEX_TYPES[0], "digest": d, "size": n}
        for t in tags or [""]:
            entry = dict(desc)
            if t:
                r = parse_normalized(t)
                entry["annotations"] = {"io.containerd.image.name": str(r),
                                        "org.opencontainers.image.ref.name": r.tag or "latest"}
            top.append(entry)
    add_bytes(tf, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    add_bytes(tf, "index.json", json.dumps({"schemaVersion": 2, "mediaType": INDEX_TYPES[0], "manifests": top},
                                           separators=(",", ":")).encode())
    add_bytes(tf, "manifest.json", json.dumps(docker, separators=(",", ":")).encode())


__all__ = ["add_to_tag", "entries_of", "save_plan", "write_layout", "gc_indexes", "index_of", "members", "orphans", "record_index",
           "resolve_platform", "untag"]
