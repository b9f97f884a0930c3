"""The image service: the image store, on a content store and the selected layer driver.

State:

- blobs (image configs, OCI manifests, uncompressed layer tars) in a
  :class:`~dockyard.content.ContentStore` under ``<data-root>/content``, each verified against
  its digest before it becomes visible;
- layers unpacked by the layer driver (``await kernel.driver_ready("storage")``), keyed by their
  chain ID (``sha256:...``), recorded as :class:`ImageLayer` (parent, diff ID, size);
- :class:`~dockyard.model.Image` records keyed ``sha256:<config digest>``, with normalized tags
  (``docker.io/library/busybox:latest``; the API shows them short).

Every arrival (load, import, commit, bootstrap) follows one path, :meth:`ImageService._install`:
stage and verify every blob in a private directory, apply the missing layers, call the
``dockyard_image_admit`` hook, move the blobs into the content store and write layer and image
records in one transaction, then emit events. A failure at any step removes the layers it
applied and the blobs it added, so the store is unchanged. Unreferenced layers and blobs are
garbage collected (:meth:`ImageService.gc`) after removals; layers and blobs of an arrival in
progress are pinned.

Keys of container read-write layers are chosen by the container service and must not start with
``sha256:`` (those are image layers, swept at start when no record names them).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import subprocess
import tarfile
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dockyard import __version__
from dockyard.content import ContentStore
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.model import Container, Image, now_iso
from dockyard.reference import InvalidReference, parse_normalized
from dockyard.services import Service
from dockyard.services.images import ImageIndex, ImageLayer, Installed, Layer, Plan, chain_ids, dumps
from dockyard.tarsafe import sha256_file
from dockyard.times import unix_time
from dockyard_engine import imageindex
from dockyard_engine.imagearchive import (
    ChunkWriter,
    ImageArchiveError,
    Ingest,
    Member,
    Progress,
    Readable,
    add_bytes,
    add_dir,
)
from dockyard_engine.imagechanges import apply_changes, history_entries, image_config

_HEX_RE = re.compile(r"^[a-f0-9]+$")
_HEX64_RE = re.compile(r"^[a-f0-9]{64}$")
_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
OCI_INDEX = ("application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json")
OCI_MANIFEST = ("application/vnd.oci.image.manifest.v1+json", "application/vnd.docker.distribution.manifest.v2+json")
#: Timestamp of everything ``bootstrap`` makes (reproducible image IDs): 2000-01-01T00:00:00Z.
BOOTSTRAP_EPOCH = 946684800
EMPTY_TAR_DIGEST = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"














def _reader_of(source: Any) -> tuple[Readable, Callable[[], None]]:
    """A blocking readable for ``source`` (bytes, path, or binary file) and its closer."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), lambda: None
    if isinstance(source, (str, os.PathLike)):
        f = open(source, "rb")  # noqa: SIM115 - closed by the returned closer
        return f, f.close
    if hasattr(source, "read"):
        return source, lambda: None
    raise InvalidArgument(f"cannot read an archive from {type(source).__name__}")




class ImageService(Service):
    name = "images"

    def __init__(self, kernel: Any) -> None:
        super().__init__(kernel)
        self._lock = asyncio.Lock()
        self._pinned_layers: collections.Counter[str] = collections.Counter()
        self._pinned_blobs: collections.Counter[str] = collections.Counter()
        #: whether :meth:`gc` may find something to collect that no removal of an image asked
        #: it for: its last run kept a layer it could not remove (one a container still builds
        #: on: an image removed with ``-f`` while in use), an arrival was in flight then, or an
        #: arrival that failed left a layer to it. Only then does a container's removal run it
        #: (it lists every image, layer and blob: 1.1 ms of daemon CPU per ``docker run --rm``
        #: with one image, more with each image kept).
        self._gc_owed = True

    # ------------------------------------------------------------------ plumbing
    @property
    def content(self) -> ContentStore:
        return ContentStore(self.kernel.config.data_root / "content")

    @property
    def _staging_root(self) -> Path:
        return self.kernel.config.data_root / "images" / "staging"

    async def driver(self) -> Any:
        return await self.kernel.driver_ready("storage")

    @contextlib.contextmanager
    def _staging(self) -> Any:
        root = self._staging_root
        root.mkdir(parents=True, exist_ok=True)
        path = root / secrets.token_hex(8)
        path.mkdir(mode=0o700)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    async def start(self) -> None:
        """Sweep interrupted writes and arrivals; remove layers no record names."""
        await asyncio.to_thread(self.content.sweep)
        await asyncio.to_thread(shutil.rmtree, self._staging_root, True)
        for d in (self._staging_root, self.content.path("sha256:" + "0" * 64).parent, self.content.root / "ingest"):
            d.mkdir(parents=True, exist_ok=True)
        drv = await self.driver()
        recorded = {layer.id for layer in self.store.list(ImageLayer)}
        orphans = [k for k in await drv.list() if k.startswith("sha256:") and k not in recorded]
        while orphans:
            left = []
            for key in orphans:
                try:
                    await drv.remove(key)
                except Conflict:
                    left.append(key)
            if len(left) == len(orphans):
                break
            orphans = left
        await self.gc()

    # ------------------------------------------------------------------ lookups
    def list(self) -> list[Image]:
        return self.store.list(Image)

    def get(self, image_id: str) -> Image:
        try:
            return self.store.get(Image, image_id)
        except NotFound:
            raise NotFound(f"No such image: {image_id}") from None

    def resolve(self, ref: str) -> Image:
        """The image ``ref`` names: ID, short ID, ``sha256:`` prefix, name, name:tag, name@digest."""
        if not ref:
            raise NotFound("No such image: ")
        images = self.list()
        if ref.startswith("sha256:"):
            hexpart = ref[7:]
            if hexpart and _HEX_RE.fullmatch(hexpart):
                return self._by_prefix(images, hexpart, ref)
            raise NotFound(f"No such image: {ref}")
        if _HEX64_RE.fullmatch(ref):
            return self._by_prefix(images, ref, ref)
        try:
            r = parse_normalized(ref)
        except InvalidReference:
            r = None
        if r is not None:
            if r.digest:
                want = f"{r.name}@{r.digest}"
                for img in images:
                    if want in img.repo_digests or (img.manifest_digest == r.digest and any(
                            t.rsplit(":", 1)[0] == r.name for t in img.repo_tags)):
                        return img
            else:
                want = str(r)
                for img in images:
                    if want in img.repo_tags:
                        return img
        if _HEX_RE.fullmatch(ref):
            return self._by_prefix(images, ref, ref)
        raise NotFound(f"No such image: {r.familiar() if r is not None else ref}")

    @staticmethod
    def _by_prefix(images: list[Image], hexpart: str, ref: str) -> Image:
        found = [i for i in images if i.id[7:].startswith(hexpart)]
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise InvalidArgument(f"ambiguous image ID prefix {ref!r}: {len(found)} images match")
        raise NotFound(f"No such image: {ref}")

    async def has_layer(self, chain_id: str) -> bool:
        """The layer is recorded and its driver holds it (a pull can skip downloading it)."""
        try:
            self.store.get(ImageLayer, chain_id)
        except NotFound:
            return False
        drv = await self.driver()
        return bool(await drv.exists(chain_id))

    # ------------------------------------------------------------------ multi-platform (imageindex.py)
    def indexes(self) -> list[ImageIndex]:
        return self.store.list(ImageIndex)

    def index_of(self, ref: str) -> ImageIndex | None:
        return imageindex.index_of(self, ref)

    def resolve_platform(self, ref: str, platform: str) -> Image:
        return imageindex.resolve_platform(self, ref, platform)

    async def add_to_tag(self, tag: str, image: Image, source: str = "local") -> ImageIndex:
        return await imageindex.add_to_tag(self, tag, image, source)

    async def record_index(self, raw: bytes, media_type: str, tags: list[str], members: dict[str, str],
                           source: str = "pull") -> ImageIndex:
        return await imageindex.record_index(self, raw, media_type, tags, members, source)

    def config_doc(self, image: Image) -> dict[str, Any]:
        """The image's config JSON as stored (its digest is the image ID)."""
        try:
            return json.loads(self.content.get(image.id))
        except NotFound:
            return {}

    def layers_of(self, image: Image) -> list[ImageLayer]:
        out = []
        for cid in chain_ids(image.layers):
            try:
                out.append(self.store.get(ImageLayer, cid))
            except NotFound:
                out.append(ImageLayer(id=cid, diff_id="", size=0))
        return out

    def top_layer(self, image: Image) -> str | None:
        """The driver key of the image's top layer (``None`` for an image without layers)."""
        chain = chain_ids(image.layers)
        return chain[-1] if chain else None

    def containers_using(self, image_id: str) -> list[Container]:
        return [c for c in self.store.list(Container) if c.image_id == image_id]

    def children(self, image_id: str) -> list[Image]:
        return [i for i in self.list() if i.parent == image_id]

    async def _check_policy(self, plans: list[Plan]) -> None:
        """Core's ``ImagePolicy`` (when a plugin offers one) judges each name an archive would
        write (an untagged image: the policy's default) before any layer is applied. An archive
        carries no registry digest, so a policy that wants signatures refuses it."""
        from dockyard.specs.storage import ImageCheck, ImagePolicy

        found = self.kernel.provided().get(ImagePolicy)
        if found is None:
            return
        for plan in plans:
            for name in plan.tags or [""]:
                await found.check(self.kernel, ImageCheck(name, "", "load"))

    # ------------------------------------------------------------------ installing
    async def _install(self, plans: list[Plan], source: str, progress: Progress | None = None) -> list[Installed]:
        """Apply, admit and record ``plans`` all or nothing (see the module docstring)."""
        drv = await self.driver()
        pinned_layers: list[str] = []
        pinned_blobs: list[str] = []
        applied: list[str] = []
        added_blobs: list[str] = []
        for plan in plans:
            for cid in chain_ids([lay.diff_id for lay in plan.layers]):
                pinned_layers.append(cid)
            pinned_blobs += [plan.id] + [lay.diff_id for lay in plan.layers]
            if plan.manifest_raw is not None:
                pinned_blobs.append("sha256:" + hashlib.sha256(plan.manifest_raw).hexdigest())
        self._pinned_layers.update(pinned_layers)
        self._pinned_blobs.update(pinned_blobs)
        try:
            layer_records: dict[str, ImageLayer] = {}
            for plan in plans:
                chain = chain_ids([lay.diff_id for lay in plan.layers])
                for i, (lay, cid) in enumerate(zip(plan.layers, chain, strict=True)):
                    if cid in layer_records:
                        continue
                    parent = chain[i - 1] if i else None
                    with contextlib.suppress(NotFound):
                        rec = self.store.get(ImageLayer, cid)
                        if await drv.exists(cid):
                            layer_records[cid] = rec
                            continue
                    short = lay.diff_id[7:19]
                    if progress is not None:
                        progress({"status": "Extracting", "id": short, "current": 0, "total": lay.size})
                    if await drv.exists(cid):
                        size = await self._existing_size(drv, cid)
                    else:
                        try:
                            info = await drv.apply(cid, parent, str(lay.path))
                        except Conflict:
                            if not await drv.exists(cid):
                                raise
                            size = await self._existing_size(drv, cid)
                        else:
                            applied.append(cid)
                            if info.diff_id and info.diff_id != lay.diff_id:
                                raise ImageArchiveError(f"layer {lay.diff_id}: the driver read digest {info.diff_id}")
                            size = info.size
                    layer_records[cid] = ImageLayer(id=cid, diff_id=lay.diff_id, parent=parent or "", size=size)
                    if progress is not None:
                        progress({"status": "Loading layer", "id": short, "current": lay.size,
                                  "total": lay.size, "done": True})
            images = [self._image_of(plan, layer_records) for plan in plans]
            for img in images:
                self.kernel.hook.dockyard_image_admit(kernel=self.kernel, image=img, source=source)
            added_blobs += await asyncio.to_thread(self._commit_blobs, plans)
            async with self._lock:
                result = self._record(images, plans, layer_records)
        except BaseException:
            mine = collections.Counter(pinned_layers)
            for cid in reversed(applied):
                if self._pinned_layers[cid] > mine[cid]:
                    self._gc_owed = True
                    continue  # a concurrent arrival uses it too; gc() collects it if it ends unused
                try:
                    await drv.remove(cid)
                except (DockyardError, OSError):
                    self._gc_owed = True
            for d in added_blobs:
                if not self._referenced_blob(d):
                    with contextlib.suppress(NotFound):
                        self.content.delete(d)
            raise
        finally:
            self._pinned_layers.subtract(pinned_layers)
            self._pinned_blobs.subtract(pinned_blobs)
            self._pinned_layers += collections.Counter()
            self._pinned_blobs += collections.Counter()
        return result

    async def _existing_size(self, drv: Any, key: str) -> int:
        try:
            return (await drv.layer_info(key)).size
        except (NotImplementedError, NotFound):
            return await drv.usage(key)

    def _referenced_blob(self, digest: str) -> bool:
        for img in self.list():
            if digest == img.id or digest == img.manifest_digest or digest in img.layers:
                return True
        return False

    def _image_of(self, plan: Plan, layers: dict[str, ImageLayer]) -> Image:
        doc = plan.doc
        diff_ids = [lay.diff_id for lay in plan.layers]
        history = history_entries(doc)
        return Image(
            id=plan.id, repo_tags=list(plan.tags), parent=plan.parent,
            created=str(doc.get("created") or ""), author=str(doc.get("author") or ""),
            comment=str(doc.get("comment") or ""), architecture=str(doc.get("architecture") or ""),
            os=str(doc.get("os") or ""), variant=str(doc.get("variant") or ""),
            config=image_config(doc.get("config")), layers=diff_ids,
            size=sum(layers[c].size for c in chain_ids(diff_ids)), history=history,
            manifest_digest=("sha256:" + hashlib.sha256(plan.manifest_raw).hexdigest()) if plan.manifest_raw else "",
            last_tag_time=now_iso() if plan.tags else "",
        )

    def _commit_blobs(self, plans: list[Plan]) -> list[str]:
        """Move verified blobs into the content store; returns the digests that were new."""
        content = self.content
        added: list[str] = []
        for plan in plans:
            if not content.exists(plan.id):
                content.put(plan.config_raw, expected_digest=plan.id)
                added.append(plan.id)
            if plan.manifest_raw is not None:
                d = "sha256:" + hashlib.sha256(plan.manifest_raw).hexdigest()
                if not content.exists(d):
                    content.put(plan.manifest_raw, expected_digest=d)
                    added.append(d)
            for lay in plan.layers:
                if content.exists(lay.diff_id) or not lay.path.exists():
                    continue
                dst = content.path(lay.diff_id)
                dst.parent.mkdir(parents=True, exist_ok=True)
                # Hashed while it was written into the private (0700) staging directory; the
                # driver hashed it again while applying it. A size check catches truncation.
                if lay.path.stat().st_size != lay.size:
                    raise ImageArchiveError(f"layer {lay.diff_id} changed while it was staged")
                fd = os.open(lay.path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.chmod(lay.path, 0o444)
                os.rename(lay.path, dst)
                added.append(lay.diff_id)
            if added:
                fd = os.open(content.path(plan.id).parent, os.O_RDONLY | os.O_DIRECTORY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        return added

    def _record(self, images: list[Image], plans: list[Plan], layers: dict[str, ImageLayer]) -> list[Installed]:
        out: list[Installed] = []
        with self.store.transaction() as tx:
            for rec in layers.values():
                tx.put(rec)
            for img, plan in zip(images, plans, strict=True):
                existing = None
                with contextlib.suppress(NotFound):
                    existing = self.store.get(Image, img.id)
                moved: list[tuple[str, str]] = []
                for tag in plan.tags:
                    for other in self.list():
                        if other.id != img.id and tag in other.repo_tags:
                            other.repo_tags.remove(tag)
                            tx.put(other)
                            moved.append((tag, other.id))
                if existing is not None:
                    tagged = [t for t in plan.tags if t not in existing.repo_tags]
                    existing.repo_tags += tagged
                    if tagged:
                        existing.last_tag_time = now_iso()
                    if plan.parent and not existing.parent:
                        existing.parent = plan.parent
                    img = existing
                else:
                    tagged = list(plan.tags)
                tx.put(img)
                out.append(Installed(img, existing is None, tagged, moved))
        return out

    def _emit(self, action: str, image: Image, name: str | None = None) -> None:
        attrs = dict(image.config.labels)
        attrs["name"] = name if name is not None else image.id
        self.kernel.emit("image", action, image.id, **attrs)

    # ------------------------------------------------------------------ load
    async def load(self, source: Any, progress: Progress | None = None) -> list[str]:
        """Load a docker-archive or OCI layout tar; returns the ``docker load`` output lines.

        ``source`` is bytes, a path, a binary file, or an object with a blocking ``read(n)``
        (see :class:`AsyncBodyReader`). All images of the archive are installed or none.
        """
        reader, close = _reader_of(source)
        try:
            with self._staging() as staging:
                ingest = Ingest(staging, progress)
                await asyncio.to_thread(ingest.read, reader)
                indexes: list[tuple[bytes, str, list[str], dict[str, str]]] = []
                plans = await asyncio.to_thread(self._plan_archive, ingest, indexes)
                await self._check_policy(plans)
                installed = await self._install(plans, "load", progress)
                for raw, media_type, names, members in indexes:  # multi-platform tags: every platform in it
                    await self.record_index(raw, media_type, names, members, source="load")
        finally:
            close()
        lines: list[str] = []
        for inst in installed:
            for tag, old in inst.moved:
                lines.append(f"The image {_familiar(tag)} already exists, renaming the old one with ID {old} "
                             "to empty string")
            self._emit("load", inst.image)
        in_index = {d for _raw, _mt, _names, members in indexes for d in members.values()}
        for inst, plan in zip(installed, plans, strict=True):
            if plan.tags:
                lines += [f"Loaded image: {_familiar(t)}" for t in plan.tags]
            elif inst.image.id not in in_index:
                lines.append(f"Loaded image ID: {inst.image.id}")
        for _raw, _mt, names, _members in indexes:
            lines += [f"Loaded image: {_familiar(t)}" for t in names if f"Loaded image: {_familiar(t)}" not in lines]
        return lines

    def _plan_archive(self, ingest: Ingest, indexes: list[Any] | None = None) -> list[Plan]:
        """The plans of an archive; a nested index's raw bytes, media type, names and members
        (manifest digest -> image ID) are appended to ``indexes`` for recording once installed."""
        if indexes is None:
            indexes = []
        if ingest.has("index.json") and ingest.has("oci-layout") and self._nests_index(ingest):
            return self._plan_oci(ingest, indexes)  # multi-platform: the OCI side has every platform
        if ingest.has("manifest.json"):
            return self._plan_docker(ingest)
        if ingest.has("index.json") and ingest.has("oci-layout"):
            return self._plan_oci(ingest, indexes)
        if ingest.has("repositories"):
            raise ImageArchiveError("unsupported archive: a legacy docker-archive without manifest.json")
        raise ImageArchiveError("invalid archive: neither a docker-archive (manifest.json) nor an OCI "
                                "image layout (oci-layout, index.json)")

    @staticmethod
    def _digest_in_name(name: str) -> str | None:
        parts = name.split("/")
        if len(parts) >= 2 and parts[-2] == "sha256" and _HEX64_RE.fullmatch(parts[-1]):
            return "sha256:" + parts[-1]
        stem = parts[-1].removesuffix(".json")
        if _HEX64_RE.fullmatch(stem):
            return "sha256:" + stem
        return None

    def _config(self, ingest: Ingest, member: Member, expected: str | None) -> tuple[bytes, dict[str, Any]]:
        if expected is not None and member.digest != expected:
            raise ImageArchiveError(f"config digest mismatch: {member.name!r} should have digest {expected} "
                                    f"but has {member.digest}")
        raw = ingest.raw(member)
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ImageArchiveError(f"invalid image config {member.name!r}: {exc}") from exc
        if not isinstance(doc, dict):
            raise ImageArchiveError(f"invalid image config {member.name!r}: not a JSON object")
        rootfs = doc.get("rootfs")
        diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
        if not isinstance(diff_ids, list) or not all(isinstance(d, str) and _DIGEST_RE.fullmatch(d) for d in diff_ids):
            raise ImageArchiveError(f"invalid image config {member.name!r}: rootfs.diff_ids must be a list of "
                                    "sha256 digests")
        if not isinstance(doc.get("config") or {}, dict):
            raise ImageArchiveError(f"invalid image config {member.name!r}: config must be an object")
        return raw, doc

    def _layers(self, ingest: Ingest, members: list[Member], diff_ids: list[str],
                compressed: list[str] | None = None) -> list[Layer]:
        if len(members) != len(diff_ids):
            raise ImageArchiveError(f"the manifest names {len(members)} layers but the config has "
                                    f"{len(diff_ids)} diff IDs")
        out = []
        for i, (m, want) in enumerate(zip(members, diff_ids, strict=True)):
            if compressed is not None and m.digest != compressed[i]:
                raise ImageArchiveError(f"layer digest mismatch: blob {m.name!r} should have digest "
                                        f"{compressed[i]} but has {m.digest}")
            lay = ingest.layer(m)
            if lay.diff_id != want:
                raise ImageArchiveError(f"layer digest mismatch: {m.name!r} has digest {lay.diff_id} but the "
                                        f"image config expects {want}")
            out.append(lay)
        return out

    def _tags(self, names: Iterable[Any]) -> list[str]:
        out = []
        for n in names:
            if not isinstance(n, str):
                raise ImageArchiveError(f"invalid tag {n!r} in the archive")
            try:
                ref = parse_normalized(n)
            except InvalidReference as exc:
                raise ImageArchiveError(f"invalid tag {n!r} in the archive: {exc.reason}") from exc
            if ref.digest:
                continue
            if str(ref) not in out:
                out.append(str(ref))
        return out

    def _plan_docker(self, ingest: Ingest) -> list[Plan]:
        manifest = ingest.json("manifest.json", "manifest")
        if not isinstance(manifest, list) or not manifest:
            raise ImageArchiveError("invalid archive: manifest.json must be a non-empty list")
        plans = []
        for entry in manifest:
            if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) \
                    or not isinstance(entry.get("Layers"), list):
                raise ImageArchiveError("invalid archive: each manifest.json entry needs Config and Layers")
            cfg = ingest.resolve(entry["Config"], "config")
            raw, doc = self._config(ingest, cfg, self._digest_in_name(entry["Config"]))
            members = []
            for name in entry["Layers"]:
                if not isinstance(name, str):
                    raise ImageArchiveError(f"invalid archive: layer path {name!r} is not a string")
                m = ingest.resolve(name, "layer")
                want = self._digest_in_name(name)
                if want is not None and name.split("/")[-2:-1] == ["sha256"] and m.digest != want:
                    raise ImageArchiveError(f"layer digest mismatch: blob {name!r} has digest {m.digest}")
                members.append(m)
            layers = self._layers(ingest, members, doc["rootfs"]["diff_ids"])
            plans.append(Plan(config_raw=raw, layers=layers, tags=self._tags(entry.get("RepoTags") or [])))
        return plans

    def _blob(self, ingest: Ingest, desc: Any, what: str) -> Member:
        if not isinstance(desc, dict) or not isinstance(desc.get("digest"), str):
            raise ImageArchiveError(f"invalid OCI layout: {what} descriptor without a digest")
        digest = desc["digest"]
        if not _DIGEST_RE.fullmatch(digest):
            raise ImageArchiveError(f"invalid OCI layout: {what} digest {digest!r} is not a sha256 digest")
        m = ingest.resolve("blobs/sha256/" + digest[7:], what)
        if m.digest != digest:
            raise ImageArchiveError(f"{what} digest mismatch: blob {m.name!r} has digest {m.digest}")
        if isinstance(desc.get("size"), int) and desc["size"] != m.size:
            raise ImageArchiveError(f"{what} {digest}: size {m.size} does not match the descriptor's {desc['size']}")
        return m

    def _plan_oci(self, ingest: Ingest, indexes: list[Any]) -> list[Plan]:
        layout = ingest.json("oci-layout")
        if not isinstance(layout, dict) or not str(layout.get("imageLayoutVersion", "")).startswith("1."):
            raise ImageArchiveError("invalid OCI layout: unsupported imageLayoutVersion")
        index = ingest.json("index.json", "index")
        descs = index.get("manifests") if isinstance(index, dict) else None
        if not isinstance(descs, list) or not descs:
            raise ImageArchiveError("invalid OCI layout: index.json lists no manifests")
        plans: dict[str, Plan] = {}
        for desc in descs:
            names = self._oci_names(desc)
            if isinstance(desc, dict) and desc.get("mediaType") in OCI_INDEX:
                for plan in self._oci_index(ingest, desc, names, indexes):
                    plans.setdefault(plan.id, plan)
                continue
            plan = self._oci_manifest(ingest, desc, depth=0)
            existing = plans.get(plan.id)
            if existing is None:
                plans[plan.id] = plan
                existing = plan
            existing.tags += [t for t in names if t not in existing.tags]
        return list(plans.values())

    @staticmethod
    def _nests_index(ingest: Ingest) -> bool:
        index = ingest.json("index.json", "index")
        return any(isinstance(d, dict) and d.get("mediaType") in OCI_INDEX
                   for d in (index.get("manifests") or [] if isinstance(index, dict) else []))

    def _oci_names(self, desc: Any) -> list[str]:
        ann = desc.get("annotations") if isinstance(desc, dict) else None
        if not isinstance(ann, dict):
            return []
        name = ann.get("io.containerd.image.name") or ""
        ref_name = ann.get("org.opencontainers.image.ref.name") or ""
        if not name and ("/" in ref_name or ":" in ref_name):
            name = ref_name  # a full reference; a bare tag names no repository
        return self._tags([name]) if name else []

    def _oci_index(self, ingest: Ingest, desc: dict[str, Any], names: list[str], indexes: list[Any]) -> list[Plan]:
        """Every platform of a nested index whose manifest is in the archive (the others stay
        listed, absent); the index is recorded under ``names`` once they are installed."""
        m = self._blob(ingest, desc, "index")
        raw = ingest.raw(m)
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ImageArchiveError(f"invalid OCI index {m.digest}: {exc}") from exc
        plans: list[Plan] = []
        members: dict[str, str] = {}
        for sub in doc.get("manifests") or []:
            if not isinstance(sub, dict) or not isinstance(sub.get("digest"), str) \
                    or not _DIGEST_RE.fullmatch(sub["digest"]) or sub.get("mediaType") in OCI_INDEX \
                    or not ingest.has("blobs/sha256/" + sub["digest"][7:]):
                continue
            if (sub.get("platform") or {}).get("os") == "unknown":
                continue  # BuildKit's attestation manifests
            plan = self._oci_manifest(ingest, sub, depth=1)
            plans.append(plan)
            members[sub["digest"]] = plan.id
        if not plans:
            raise ImageArchiveError(f"invalid OCI layout: the index {m.digest} has no platform in the archive")
        indexes.append((raw, str(doc.get("mediaType") or desc.get("mediaType") or ""), names, members))
        return plans

    def _oci_manifest(self, ingest: Ingest, desc: Any, depth: int) -> Plan:
        if depth > 4:
            raise ImageArchiveError("invalid OCI layout: indexes nested too deeply")
        m = self._blob(ingest, desc, "manifest")
        raw = ingest.raw(m)
        try:
            doc = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ImageArchiveError(f"invalid OCI manifest {m.digest}: {exc}") from exc
        media = doc.get("mediaType") or desc.get("mediaType") or ""
        if media in OCI_INDEX or "manifests" in doc:
            subs = [d for d in doc.get("manifests") or [] if isinstance(d, dict)]
            arch = self.kernel.facts()["arch"]
            pick = [d for d in subs if (d.get("platform") or {}).get("architecture") == arch
                    and (d.get("platform") or {}).get("os", "linux") == "linux"] or subs
            if not pick:
                raise ImageArchiveError(f"invalid OCI index {m.digest}: no manifests")
            return self._oci_manifest(ingest, pick[0], depth + 1)
        if not isinstance(doc.get("config"), dict) or not isinstance(doc.get("layers"), list):
            raise ImageArchiveError(f"invalid OCI manifest {m.digest}: config and layers are required")
        cfg = self._blob(ingest, doc["config"], "config")
        config_raw, cdoc = self._config(ingest, cfg, doc["config"]["digest"])
        members = [self._blob(ingest, d, "layer") for d in doc["layers"]]
        layers = self._layers(ingest, members, cdoc["rootfs"]["diff_ids"])
        return Plan(config_raw=config_raw, layers=layers, manifest_raw=raw)

    # ------------------------------------------------------------------ import, bootstrap, commit
    async def import_image(self, source: Any, *, repo: str = "", tag: str = "", changes: Iterable[str] = (),
                           message: str = "", src: str = "-", progress: Progress | None = None) -> Image:
        """Import a root filesystem tar (plain or gzip/bzip2/xz) as a one-layer image."""
        ref = self._repo_tag(repo, tag)
        reader, close = _reader_of(source)
        try:
            with self._staging() as staging:
                layer = await asyncio.to_thread(_stage_rootfs, reader, staging / "layer.tar", progress)
                now = now_iso()
                config = apply_changes({}, list(changes))
                doc = {
                    "architecture": self.kernel.facts()["arch"], "os": "linux", "created": now,
                    "comment": message or f"Imported from {src}", "docker_version": f"dockyard-{__version__}",
                    "config": config, "container_config": {},
                    "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
                    "history": [{"created": now, "comment": message or f"Imported from {src}"}],
                }
                plan = Plan(config_raw=dumps(doc), layers=[layer], tags=[ref] if ref else [])
                (inst,) = await self._install([plan], "import", progress)
        finally:
            close()
        self._emit("import", inst.image)
        for t in inst.tagged:
            self._emit("tag", inst.image, _familiar(t))
        return inst.image

    @staticmethod
    def _repo_tag(repo: str, tag: str) -> str:
        if not repo:
            if tag:
                raise InvalidArgument("a tag needs a repository name")
            return ""
        try:
            ref = parse_normalized(repo, default_tag=not tag)
            if tag:
                if ref.tag or ref.digest:
                    raise InvalidArgument(f"invalid repository name {repo!r}: it already has a tag or digest")
                ref = ref.with_tag(tag)
        except InvalidReference as exc:
            raise InvalidArgument(str(exc)) from exc
        if ref.digest:
            raise InvalidArgument(f"cannot tag with a digest reference {repo!r}")
        return str(ref)

    async def bootstrap(self, name: str = "busybox", busybox: str = "/bin/busybox", platform: str = "") -> Image:
        """Build ``busybox:latest`` (or ``name``) from the host's static busybox, offline.

        ``platform`` (``linux/arm64``, ``linux/arm/v7``): from Debian's busybox-static of that
        architecture (:func:`localindex.foreign_busybox`), added to the index the tag names
        (started from the image it names now), so ``run --platform`` picks it.
        Reproducible: the same busybox binary gives the same image ID.
        """
        from dockyard import platforms
        from dockyard_engine import localindex

        ref = self._repo_tag(name, "")
        plat = platforms.normalize(platforms.parse(platform)) if platform else platforms.host()
        prefix: list[str] = []
        if platform and plat != platforms.host():
            if busybox == "/bin/busybox":
                busybox = localindex.foreign_busybox(plat)
            prefix = localindex.runner(plat)
        if not os.path.isfile(busybox) or not os.access(busybox, os.X_OK):
            raise NotFound(f"{busybox} not found: install busybox-static to bootstrap an image")
        if platform:
            localindex.check_binary(busybox, plat)
        indexed = bool(platform) or self.index_of(ref) is not None
        with self._staging() as staging:
            layer, version = await asyncio.to_thread(_busybox_rootfs, busybox, staging / "layer.tar", prefix)
            created = datetime.fromtimestamp(BOOTSTRAP_EPOCH, UTC).isoformat().replace("+00:00", "Z")
            doc = {
                "architecture": plat.architecture if platform else self.kernel.facts()["arch"], "os": "linux",
                **({"variant": plat.variant} if platform and plat.variant else {}), "created": created,
                "config": {"Cmd": ["sh"], "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
                "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]},
                "history": [{"created": created,
                             "created_by": f"dockyard image bootstrap: {version} from {busybox}"},
                            {"created": created, "created_by": 'CMD ["sh"]', "empty_layer": True}],
            }
            plan = Plan(config_raw=dumps(doc), layers=[layer], tags=[] if indexed else [ref])
            (inst,) = await self._install([plan], "import")
        if inst.new:
            self._emit("import", inst.image)
        if indexed:
            await imageindex.add_to_tag(self, ref, inst.image, source="bootstrap")
            self._emit("tag", inst.image, _familiar(ref))
        for t in inst.tagged:
            self._emit("tag", inst.image, _familiar(t))
        return self.store.get(Image, inst.image.id)

    async def commit(self, layer_key: str = "", *, container: Container | None = None, base_image: str = "",
                     config: dict[str, Any] | None = None, repo: str = "", tag: str = "", author: str = "",
                     comment: str = "", changes: Iterable[str] = (), created_by: str = "",
                     container_id: str = "", container_config: dict[str, Any] | None = None,
                     platform: str = "") -> Image:
        """Turn the changes of read-write layer ``layer_key`` into a new image on ``base_image``.

        ``platform`` (``linux/arm64``) labels an image without a base (a build's ``FROM
        scratch`` for another platform); with a base, the base's platform is the image's.

        ``config`` is the Docker ``config`` object of the new image (default: the base image's),
        ``changes`` are applied on top. The image's parent is ``base_image``. With ``container``
        (a :class:`~dockyard.model.Container` whose read-write layer key is its ID) the layer,
        base image, config (the container's, with the non-empty keys of ``config`` over it),
        ``created_by`` (its command) and ``container_config`` come from it, as ``docker
        commit`` does. Emits ``tag`` when ``repo`` is given (the container service emits the
        container's ``commit`` event).
        """
        if container is not None:
            layer_key = layer_key or container.id
            base_image = base_image or container.image_id
            container_id = container_id or container.id
            cc = container_config_object(container)
            merged = dict(cc)
            for k, v in (config or {}).items():
                if v not in (None, "", [], {}):
                    merged[k] = v
            config = merged
            container_config = container_config or cc
            created_by = created_by or " ".join([*container.config.entrypoint, *container.config.cmd])
        if not layer_key:
            raise InvalidArgument("commit needs a layer key or a container")
        ref = self._repo_tag(repo, tag)
        base = self.get(base_image) if base_image else None
        base_doc = self.config_doc(base) if base else {}
        drv = await self.driver()
        with self._staging() as staging:
            tar = staging / "diff.tar"
            await drv.diff(layer_key, str(tar))
            diff_id = await asyncio.to_thread(sha256_file, tar)
            lay = Layer(diff_id=diff_id, size=tar.stat().st_size, path=tar)
            base_layers = [Layer(diff_id=d, size=0, path=self.content.path(d)) for d in (base.layers if base else [])]
            now = now_iso()
            cfg = json.loads(json.dumps(config)) if config is not None else dict(base_doc.get("config") or {})
            apply_changes(cfg, list(changes))
            history = list(base_doc.get("history") or [])
            entry: dict[str, Any] = {"created": now}
            if created_by:
                entry["created_by"] = created_by
            if author:
                entry["author"] = author
            if comment:
                entry["comment"] = comment
            history.append(entry)
            doc = {
                "architecture": base_doc.get("architecture") or self.kernel.facts()["arch"],
                "os": base_doc.get("os") or "linux", "created": now, "author": author, "comment": comment,
                "container": container_id, "container_config": container_config or {},
                "docker_version": f"dockyard-{__version__}", "config": cfg,
                "rootfs": {"type": "layers", "diff_ids": [*(base.layers if base else []), diff_id]},
                "history": history,
            }
            if base_doc.get("variant"):
                doc["variant"] = base_doc["variant"]
            if platform and not base_doc:
                from dockyard import platforms

                p = platforms.normalize(platforms.parse(platform))
                doc.update(os=p.os, architecture=p.architecture, **({"variant": p.variant} if p.variant else {}))
            plan = Plan(config_raw=dumps(doc), layers=[*base_layers, lay], tags=[ref] if ref else [],
                        parent=base.id if base else "")
            (inst,) = await self._install([plan], "commit")
        for t in inst.tagged:
            self._emit("tag", inst.image, _familiar(t))
        return inst.image

    async def install(self, plans: list[Plan], source: str, progress: Progress | None = None) -> list[Installed]:
        """Install verified ``plans`` (staged layers, config bytes, tags) all or nothing: the
        path every arrival takes (the distribution plugin's pull uses it with ``"pull"``)."""
        return await self._install(plans, source, progress)

    def top_layer_key(self, image: Image) -> str | None:
        """Alias of :meth:`top_layer` (the driver key a container's layer is prepared on)."""
        return self.top_layer(image)

    # ------------------------------------------------------------------ container root filesystems
    async def prepare_rootfs(self, key: str, image_ref: str) -> str:
        """Create read-write layer ``key`` on the image's layers and mount it; returns the path.

        ``key`` must not start with ``sha256:`` (the container ID is the natural choice).
        """
        if key.startswith("sha256:"):
            raise InvalidArgument("container layer keys must not start with sha256:")
        image = self.resolve(image_ref)
        drv = await self.driver()
        await drv.prepare(key, self.top_layer(image))
        try:
            return await drv.mount(key)
        except BaseException:
            with contextlib.suppress(DockyardError):
                await drv.remove(key)
            raise

    async def remove_rootfs(self, key: str) -> None:
        """Unmount and remove read-write layer ``key``, then collect layers nothing uses (when
        something may be left to collect: ``_gc_owed``)."""
        drv = await self.driver()
        if await drv.exists(key):
            await drv.unmount(key)
            await drv.remove(key)
        if self._gc_owed:
            await self.gc()

    # ------------------------------------------------------------------ tag, remove, prune
    async def tag(self, source: str, repo: str, tag: str = "") -> Image:
        ref = self._repo_tag(repo, tag)
        if not ref:
            raise InvalidArgument("repository name must be given")
        async with self._lock:
            image = self.resolve(source)
            with self.store.transaction() as tx:
                for other in self.list():
                    if other.id != image.id and ref in other.repo_tags:
                        other.repo_tags.remove(ref)
                        tx.put(other)
                if ref not in image.repo_tags:
                    image.repo_tags.append(ref)
                image.last_tag_time = now_iso()
                tx.put(image)
        self._emit("tag", image, _familiar(ref))
        return image

    async def remove(self, ref: str, force: bool = False, prune: bool = True) -> list[dict[str, str]]:
        """``docker rmi``: untag and/or delete, with dockerd's conflict rules and answer."""
        records: list[dict[str, str]] = []
        async with self._lock:
            image = self.resolve(ref)
            events: list[tuple[str, Image]] = []
            is_id = self._is_id_prefix(image.id, ref)
            removed_ref = False
            if not is_id:
                r = parse_normalized(ref)
                if not force and len(image.repo_tags) + len(image.repo_digests) <= 1:
                    users = self.containers_using(image.id)
                    if users:
                        raise Conflict(f'conflict: unable to remove repository reference "{ref}" (must force) - '
                                       f"container {users[0].id[:12]} is using its referenced image {image.id[7:19]}")
                name = str(r) if not r.digest else f"{r.name}@{r.digest}"
                gone = imageindex.untag(self, name) if not r.digest else set()  # a multi-platform tag
                image.repo_tags = [t for t in image.repo_tags if t != name]
                image.repo_digests = [d for d in image.repo_digests if d != name and d not in gone]
                self.store_put(image)
                records.append({"Untagged": r.familiar()})
                events.append(("untag", image))
                for other in imageindex.orphans(self, gone, skip=image.id):  # the index's other platforms
                    with contextlib.suppress(Conflict):
                        await self._delete_helper(other, records, events, force, prune, quiet=True)
                if image.repo_tags or image.repo_digests:
                    self._emit_all(events)
                    return records
                removed_ref = True
            elif self._single_reference(image):
                self._check_conflict(image, hard_only=force, soft_refs=False)
                for t in list(image.repo_tags):
                    records.append({"Untagged": _familiar(t)})
                    events.append(("untag", image))
                for d in list(image.repo_digests):
                    records.append({"Untagged": _familiar(d)})
                    events.append(("untag", image))
                image.repo_tags, image.repo_digests = [], []
                self.store_put(image)
            try:
                await self._delete_helper(image, records, events, force, prune, quiet=removed_ref)
            finally:
                self._emit_all(events)
        await self.gc(records)
        return records

    @staticmethod
    def _single_reference(image: Image) -> bool:
        """dockerd's ``isSingleReference``: one tag (plus digests of its repository only)."""
        refs = len(image.repo_tags) + len(image.repo_digests)
        if refs <= 1:
            return refs == 1
        if len(image.repo_tags) > 1:
            return False
        repo = (image.repo_tags[0].rsplit(":", 1)[0] if image.repo_tags
                else image.repo_digests[0].split("@", 1)[0])
        return all(d.split("@", 1)[0] == repo for d in image.repo_digests)

    def store_put(self, image: Image) -> None:
        with self.store.transaction() as tx:
            tx.put(image)

    def _emit_all(self, events: list[tuple[str, Image]]) -> None:
        for action, img in events:
            self._emit(action, img)
        events.clear()

    @staticmethod
    def _is_id_prefix(image_id: str, ref: str) -> bool:
        hexpart = ref[7:] if ref.startswith("sha256:") else ref
        return bool(hexpart) and _HEX_RE.fullmatch(hexpart) is not None and image_id[7:].startswith(hexpart)

    def _conflict(self, image: Image, hard_only: bool, soft_refs: bool = True) -> Conflict | None:
        short = image.id[7:19]
        if self.children(image.id):
            return Conflict(f"conflict: unable to delete {short} (cannot be forced) - image has dependent child images")
        users = self.containers_using(image.id)
        running = [c for c in users if c.state.running]
        if running:
            return Conflict(f"conflict: unable to delete {short} (cannot be forced) - image is being used by "
                            f"running container {running[0].id[:12]}")
        if hard_only:
            return None
        if soft_refs and len(image.repo_tags) + len(image.repo_digests) > 1:
            return Conflict(f"conflict: unable to delete {short} (must be forced) - image is referenced in "
                            "multiple repositories")
        if users:
            return Conflict(f"conflict: unable to delete {short} (must be forced) - image is being used by "
                            f"stopped container {users[0].id[:12]}")
        return None

    def _check_conflict(self, image: Image, hard_only: bool, soft_refs: bool = True) -> None:
        c = self._conflict(image, hard_only, soft_refs)
        if c is not None:
            raise c

    async def _delete_helper(self, image: Image, records: list[dict[str, str]], events: list[tuple[str, Image]],
                             force: bool, prune: bool, quiet: bool) -> None:
        c = self._conflict(image, hard_only=force)
        if c is not None:
            used = bool(self.containers_using(image.id))
            if quiet and (image.repo_tags or self.children(image.id) or used):
                return
            raise c
        with self.store.transaction() as tx:
            for t in image.repo_tags:
                records.append({"Untagged": _familiar(t)})
                events.append(("untag", image))
            tx.delete(Image, image.id)
        events.append(("delete", image))
        records.append({"Deleted": image.id})
        if not prune or not image.parent:
            return
        try:
            parent = self.get(image.parent)
        except NotFound:
            return
        if parent.repo_tags or parent.repo_digests:
            return
        await self._delete_helper(parent, records, events, False, True, True)

    async def prune(self, dangling_only: bool = True, match: Callable[[Image], bool] | None = None
                    ) -> tuple[list[dict[str, str]], int]:
        """Remove unused images (dangling ones only by default); ``(records, bytes reclaimed)``."""
        records: list[dict[str, str]] = []
        events: list[tuple[str, Image]] = []
        async with self._lock:
            used = {c.image_id for c in self.store.list(Container)}
            for image in sorted(self.list(), key=lambda i: i.created, reverse=True):
                try:
                    image = self.get(image.id)
                except NotFound:
                    continue  # removed as a parent
                if image.id in used or (dangling_only and (image.repo_tags or image.repo_digests)) \
                        or self.children(image.id):
                    continue
                if match is not None and not match(image):
                    continue
                try:
                    await self._delete_helper(image, records, events, force=False, prune=True, quiet=False)
                except Conflict:
                    continue
            self._emit_all(events)
        reclaimed = await self.gc(records)
        return records, reclaimed

    async def gc(self, records: list[dict[str, str]] | None = None) -> int:
        """Remove layers and blobs no image references (nor an arrival in progress); returns
        the bytes of layer content removed. Layers a container still builds on stay."""
        drv = await self.driver()
        async with self._lock:
            owed = bool(+self._pinned_layers or +self._pinned_blobs)  # an arrival in flight
            images = self.list()
            keep_layers = {cid for img in images for cid in chain_ids(img.layers)}
            keep_layers |= {k for k, n in self._pinned_layers.items() if n > 0}
            keep_blobs = {d for img in images for d in (img.id, img.manifest_digest, *img.layers) if d}
            keep_blobs |= imageindex.gc_indexes(self)
            keep_blobs |= {k for k, n in self._pinned_blobs.items() if n > 0}
            layers = {rec.id: rec for rec in self.store.list(ImageLayer)}
            doomed = [rec for cid, rec in layers.items() if cid not in keep_layers]

            def depth(rec: ImageLayer) -> int:
                n, cur = 0, rec
                while cur.parent and cur.parent in layers and n < 1000:
                    cur, n = layers[cur.parent], n + 1
                return n

            reclaimed = 0
            removed: set[str] = set()
            for rec in sorted(doomed, key=depth, reverse=True):
                try:
                    if await drv.exists(rec.id):
                        await drv.remove(rec.id)
                except Conflict:
                    owed = True
                    continue  # a container's layer (or another layer) still builds on it
                with self.store.transaction() as tx:
                    tx.delete(ImageLayer, rec.id)
                removed.add(rec.id)
                reclaimed += rec.size
                if records is not None:
                    records.append({"Deleted": rec.id})
            # Driver layers no record names (an arrival that failed while another used them).
            for key in sorted(await drv.list(), reverse=True):
                if key.startswith("sha256:") and key not in layers and key not in keep_layers:
                    try:
                        await drv.remove(key)
                    except Conflict:
                        owed = True
                    except NotFound:
                        pass
            still = {cid: rec for cid, rec in layers.items() if cid not in removed}
            keep_blobs |= {rec.diff_id for rec in still.values()}
            for d in await asyncio.to_thread(self.content.list):
                if d not in keep_blobs:
                    with contextlib.suppress(NotFound):
                        self.content.delete(d)
            self._gc_owed = owed
        return reclaimed

    # ------------------------------------------------------------------ history, df
    def history(self, ref: str) -> list[dict[str, Any]]:
        """``docker history`` rows, newest first: Id, Created, CreatedBy, Tags, Size, Comment."""
        image = self.resolve(ref)
        rows: list[dict[str, Any]] = []
        layer_sizes = [rec.size for rec in self.layers_of(image)]
        cur: Image | None = image
        ids_at: dict[int, Image] = {}
        while cur is not None:
            ids_at[len(cur.history) - 1] = cur
            try:
                cur = self.get(cur.parent) if cur.parent else None
            except NotFound:
                cur = None
        li = 0
        entries = []
        for h in image.history:
            size = 0
            if not h.empty_layer:
                size = layer_sizes[li] if li < len(layer_sizes) else 0
                li += 1
            entries.append((h, size))
        if not image.history:
            entries = [(None, s) for s in layer_sizes] or [(None, 0)]
            ids_at = {len(entries) - 1: image}
        for i, (h, size) in reversed(list(enumerate(entries))):
            owner = ids_at.get(i)
            rows.append({
                "Id": owner.id if owner is not None else "<missing>",
                "Created": unix_time(h.created if h else image.created),
                "CreatedBy": h.created_by if h else "",
                "Tags": [_familiar(t) for t in owner.repo_tags] or None if owner is not None else None,
                "Size": size,
                "Comment": h.comment if h else image.comment,
            })
        return rows

    def df(self) -> dict[str, Any]:
        """Disk usage: ``layers_size`` and per image ``(image, containers, shared_size)``."""
        images = self.list()
        layers = {rec.id: rec for rec in self.store.list(ImageLayer)}
        users: collections.Counter[str] = collections.Counter()
        for c in self.store.list(Container):
            users[c.image_id] += 1
        owners: collections.Counter[str] = collections.Counter()
        for img in images:
            for cid in set(chain_ids(img.layers)):
                owners[cid] += 1
        out = []
        for img in images:
            shared = sum(layers[c].size for c in set(chain_ids(img.layers)) if c in layers and owners[c] > 1)
            out.append((img, users[img.id], shared))
        return {"layers_size": sum(rec.size for rec in layers.values()), "images": out}

    # ------------------------------------------------------------------ save
    def _save_set(self, names: list[str]) -> list[tuple[Image, list[str]]]:
        """Images to save with the tags to record for each (resolving fails before any output)."""
        chosen: dict[str, tuple[Image, list[str]]] = {}
        for name in names:
            image = self.resolve(name)
            tags: list[str] = []
            if not self._is_id_prefix(image.id, name) and not name.startswith("sha256:"):
                r = parse_normalized(name, default_tag=False)
                if r.tag:
                    tags = [str(r)]
                elif not r.digest:  # a repository: every tag of it
                    tags = [t for img in self.list() for t in img.repo_tags if t.rsplit(":", 1)[0] == r.name]
                    for t in tags:
                        other = self.resolve(t)
                        prev = chosen.setdefault(other.id, (other, []))
                        prev[1].extend(x for x in [t] if x not in prev[1])
                    continue
            prev = chosen.setdefault(image.id, (image, []))
            prev[1].extend(t for t in tags if t not in prev[1])
        return list(chosen.values())

    async def save(self, names: list[str], sink: Callable[[bytes], None]) -> None:
        """Write a docker-archive of ``names`` to ``sink`` (called with chunks, from a thread)."""
        chosen = self._save_set(names)
        plan = imageindex.save_plan(self, chosen)
        pinned = [d for img, _ in chosen for d in (img.id, *img.layers)]
        pinned += [d for _i, _t, ix in plan if ix is not None
                   for _e, m in imageindex.members(self, ix) for d in (m.id, *m.layers)]
        self._pinned_blobs.update(pinned)
        try:
            if any(ix is not None for _i, _t, ix in plan):  # a multi-platform tag: Docker 25's layout
                await asyncio.to_thread(self._write_layout, plan, sink)
            else:
                await asyncio.to_thread(self._write_archive, chosen, sink)
        finally:
            self._pinned_blobs.subtract(pinned)
            self._pinned_blobs += collections.Counter()
        for img, _tags in chosen:
            self._emit("save", img)

    async def save_stream(self, names: list[str]) -> AsyncIterator[bytes]:
        """The docker-archive of ``names`` as an async iterator of chunks (NotFound raised
        before the first chunk)."""
        self._save_set(names)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | BaseException | None] = asyncio.Queue(maxsize=8)
        stop = threading.Event()

        def sink(chunk: bytes) -> None:
            fut = asyncio.run_coroutine_threadsafe(queue.put(chunk), loop)
            while True:
                try:
                    fut.result(timeout=0.5)
                    return
                except concurrent.futures.TimeoutError:
                    if stop.is_set():
                        fut.cancel()
                        raise BrokenPipeError("the reader of the archive went away") from None

        async def produce() -> None:
            try:
                await self.save(names, sink)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer
                await queue.put(exc)
            else:
                await queue.put(None)

        task = asyncio.create_task(produce())
        try:
            while True:
                item = await queue.get()
                if item is None:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            if not task.done():
                task.cancel()
                # unblock a producer waiting on a full queue
                while not queue.empty():
                    queue.get_nowait()
                with contextlib.suppress(BaseException):
                    await task

    def _write_layout(self, plan: list[Any], sink: Callable[[bytes], None]) -> None:
        out = ChunkWriter(sink)
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
            imageindex.write_layout(self, plan, tf, add_bytes, _familiar)
        out.flush()

    def _write_archive(self, chosen: list[tuple[Image, list[str]]], sink: Callable[[bytes], None]) -> None:
        content = self.content
        out = ChunkWriter(sink)
        manifest = []
        repositories: dict[str, dict[str, str]] = {}
        written: set[str] = set()
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:  # type: ignore[call-overload]
            for image, tags in chosen:
                mtime = unix_time(image.created)
                cfg_name = image.id[7:] + ".json"
                raw = content.get(image.id)
                if cfg_name not in written:
                    add_bytes(tf, cfg_name, raw, mtime)
                    written.add(cfg_name)
                layer_paths = []
                parent_v1 = ""
                chain = chain_ids(image.layers)
                for i, (diff_id, cid) in enumerate(zip(image.layers, chain, strict=True)):
                    v1 = hashlib.sha256(f"{cid} {parent_v1}".encode()).hexdigest()
                    if v1 not in written:
                        add_dir(tf, v1, mtime)
                        add_bytes(tf, f"{v1}/VERSION", b"1.0", mtime)
                        v1doc: dict[str, Any] = {"id": v1, "created": image.created or "1970-01-01T00:00:00Z",
                                                 "container_config": {"Cmd": None}, "os": image.os or "linux"}
                        if parent_v1:
                            v1doc["parent"] = parent_v1
                        if i == len(chain) - 1:
                            v1doc["config"] = json.loads(raw).get("config") or {}
                        add_bytes(tf, f"{v1}/json", dumps(v1doc), mtime)
                        blob = content.path(diff_id)
                        ti = tarfile.TarInfo(f"{v1}/layer.tar")
                        try:
                            ti.size = blob.stat().st_size
                        except FileNotFoundError:
                            raise NotFound(f"layer blob {diff_id} of image {image.id} is missing") from None
                        ti.mtime = mtime
                        ti.mode = 0o644
                        with open(blob, "rb") as f:
                            tf.addfile(ti, f)
                        written.add(v1)
                    layer_paths.append(f"{v1}/layer.tar")
                    parent_v1 = v1
                manifest.append({"Config": cfg_name, "RepoTags": [_familiar(t) for t in tags] or None,
                                 "Layers": layer_paths})
                for t in tags:
                    r = parse_normalized(t)
                    if parent_v1:
                        repositories.setdefault(r.familiar_name, {})[r.tag or "latest"] = parent_v1
            add_bytes(tf, "manifest.json", json.dumps(manifest, separators=(",", ":")).encode())
            if repositories:
                add_bytes(tf, "repositories", json.dumps(repositories, separators=(",", ":")).encode())
        out.flush()


def container_config_object(c: Container) -> dict[str, Any]:
    """A container's configuration as a Docker ``config`` object (what ``commit`` records)."""
    cc = c.config
    out: dict[str, Any] = {
        "Hostname": cc.hostname or c.id[:12], "Domainname": cc.domainname, "User": cc.user,
        "AttachStdin": cc.attach_stdin, "AttachStdout": cc.attach_stdout, "AttachStderr": cc.attach_stderr,
        "Tty": cc.tty, "OpenStdin": cc.open_stdin, "StdinOnce": cc.stdin_once,
        "Env": list(cc.env) or None, "Cmd": list(cc.cmd) or None, "Image": cc.image,
        "Volumes": {v: {} for v in cc.volumes} or None, "WorkingDir": cc.working_dir,
        "Entrypoint": list(cc.entrypoint) or None, "OnBuild": None, "Labels": dict(cc.labels) or None,
    }
    if cc.exposed_ports:
        out["ExposedPorts"] = {p: {} for p in cc.exposed_ports}
    if cc.stop_signal:
        out["StopSignal"] = cc.stop_signal
    if cc.healthcheck is not None:
        hc = cc.healthcheck
        out["Healthcheck"] = {"Test": list(hc.test), "Interval": hc.interval, "Timeout": hc.timeout,
                              "StartPeriod": hc.start_period, "Retries": hc.retries}
    return out


def _familiar(ref: str) -> str:
    try:
        return parse_normalized(ref).familiar()
    except InvalidReference:
        return ref


# ------------------------------------------------------------------------------ staging helpers
def _stage_rootfs(reader: Readable, dest: Path, progress: Progress | None) -> Layer:
    """Copy a rootfs tar (maybe compressed) to ``dest`` uncompressed, hashing it."""
    import bz2
    import lzma
    import zlib

    h = hashlib.sha256()
    size = 0
    first = reader.read(1 << 20)
    if first[:2] == b"\x1f\x8b":
        dec: Any = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif first[:3] == b"BZh":
        dec = bz2.BZ2Decompressor()
    elif first[:6] == b"\xfd7zXZ\x00":
        dec = lzma.LZMADecompressor()
    elif first[:4] == b"\x28\xb5\x2f\xfd":
        raise ImageArchiveError("zstd-compressed archives are not supported yet")
    else:
        dec = None
    read = 0
    with open(dest, "xb") as out:
        chunk = first
        while chunk:
            read += len(chunk)
            try:
                data = dec.decompress(chunk) if dec is not None else chunk
            except (OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
                raise ImageArchiveError(f"corrupt compressed archive: {exc}") from exc
            h.update(data)
            out.write(data)
            size += len(data)
            if progress is not None:
                progress({"status": "Importing", "id": "", "current": read, "total": 0})
            chunk = reader.read(1 << 20)
        if dec is not None and hasattr(dec, "eof") and not dec.eof:
            raise ImageArchiveError("truncated compressed archive")
    if size == 0:
        raise ImageArchiveError("empty archive: expected a tar of the root filesystem")
    return Layer(diff_id="sha256:" + h.hexdigest(), size=size, path=dest)


def _busybox_rootfs(busybox: str, dest: Path, prefix: list[str] | None = None) -> tuple[Layer, str]:
    """A deterministic rootfs tar: busybox, an applet symlink per ``busybox --list`` entry in
    /bin, passwd/group with root and nobody, and the usual empty directories. ``prefix`` runs
    a foreign busybox (``[qemu-aarch64-static]``)."""
    prefix = prefix or []
    proc = subprocess.run([*prefix, busybox, "--list"], capture_output=True, text=True, timeout=30, check=False)
    if proc.returncode != 0:
        raise DockyardError(f"{busybox} --list failed: {proc.stderr.strip()}")
    applets = sorted({a.strip() for a in proc.stdout.split() if a.strip() and "/" not in a} - {"busybox"})
    head = subprocess.run([*prefix, busybox], capture_output=True, text=True, timeout=30, check=False).stdout
    version = head.splitlines()[0].split(" multi-call")[0] if head else "BusyBox"
    t = BOOTSTRAP_EPOCH

    def info(name: str, kind: bytes = tarfile.DIRTYPE, mode: int = 0o755) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.type = kind
        ti.mode = mode
        ti.mtime = t
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = ""
        return ti

    with open(dest, "xb") as f, tarfile.open(fileobj=f, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for d, mode in (("bin", 0o755), ("dev", 0o755), ("etc", 0o755), ("home", 0o755), ("proc", 0o555),
                        ("root", 0o700), ("sys", 0o555), ("tmp", 0o1777), ("usr", 0o755), ("var", 0o755)):
            tf.addfile(info(d, mode=mode))
        ti = info("bin/busybox", tarfile.REGTYPE, 0o755)
        ti.size = os.path.getsize(busybox)
        with open(busybox, "rb") as bb:
            tf.addfile(ti, bb)
        for a in applets:
            link = info(f"bin/{a}", tarfile.SYMTYPE, 0o777)
            link.linkname = "busybox"
            tf.addfile(link)
        for name, text in (("etc/group", "root:x:0:\nnobody:x:65534:\n"),
                           ("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                                          "nobody:x:65534:65534:nobody:/home:/bin/false\n")):
            data = text.encode()
            fi = info(name, tarfile.REGTYPE, 0o644)
            fi.size = len(data)
            tf.addfile(fi, io.BytesIO(data))
    return Layer(diff_id=sha256_file(dest), size=dest.stat().st_size, path=dest), version


__all__ = ["ImageService"]
