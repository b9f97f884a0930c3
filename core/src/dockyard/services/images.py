"""The ``images`` service: its typed interface and the data that crosses the seam.

A puller (the distribution plugin) or the builder stages verified layers and hands the service
a :class:`Plan`; :meth:`Images.install` makes it an image, all or nothing.

.. versionadded:: 0.2
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from dockyard.content import ContentStore
from dockyard.model import Image, now_iso
from dockyard.specs.storage import LayerDriver

#: A progress callback: Docker JSON-message dicts (``status``, ``progressDetail``, ``id``).
Progress = Callable[[dict[str, Any]], None]


@dataclass
class Layer:
    """An uncompressed layer tar in a staging directory, with its diff ID."""

    diff_id: str
    size: int
    path: Path


@dataclass
class ImageLayer:
    """An image layer held by the layer driver under its chain ID."""

    KIND: ClassVar[str] = "image-layer"
    id: str  # chain ID, also the driver key
    diff_id: str  # digest of the uncompressed layer tar (a blob in the content store)
    parent: str = ""  # chain ID of the layer below
    size: int = 0  # bytes of file content the layer adds
    created: str = field(default_factory=now_iso)


@dataclass
class IndexEntry:
    """One ``manifests[]`` descriptor of an image index, and the local image it names when
    this store holds that platform (``image_id`` "" or an image no longer recorded: absent)."""

    digest: str
    media_type: str = ""
    size: int = 0
    platform: dict[str, Any] = field(default_factory=dict)  # the OCI ``platform`` object
    annotations: dict[str, str] = field(default_factory=dict)
    image_id: str = ""


@dataclass
class ImageIndex:
    """An OCI image index or Docker manifest list a tag names, with every platform's entry,
    present here or not (``docker pull --platform`` adds one). Its bytes are a blob of the
    content store under ``id`` (so a push or save keeps its digest). A tag names one index;
    the tag's image (``Image.repo_tags``) is the member this host runs best.

    .. versionadded:: 0.3
    """

    KIND: ClassVar[str] = "image-index"
    id: str  # sha256 of the index bytes
    media_type: str = ""
    repo_tags: list[str] = field(default_factory=list)  # normalized
    repo_digests: list[str] = field(default_factory=list)  # name@<index digest>
    manifests: list[IndexEntry] = field(default_factory=list)
    created: str = field(default_factory=now_iso)
    source: str = ""  # "pull", "load", "manifest" (assembled here by ``dockyard manifest``)


@dataclass
class Plan:
    """An image about to be installed: its config and staged layers, all verified."""

    config_raw: bytes
    layers: list[Layer]
    tags: list[str] = field(default_factory=list)  # normalized
    manifest_raw: bytes | None = None
    parent: str = ""

    @property
    def id(self) -> str:
        return "sha256:" + hashlib.sha256(self.config_raw).hexdigest()

    @property
    def doc(self) -> dict[str, Any]:
        return json.loads(self.config_raw)


@dataclass
class Installed:
    image: Image
    new: bool  # the image did not exist before
    tagged: list[str]  # tags newly attached (normalized)
    moved: list[tuple[str, str]]  # (tag, previous image ID) for tags taken from another image


def chain_ids(diff_ids: list[str]) -> list[str]:
    """Chain IDs of a layer stack (OCI image spec): ``chain[i] = sha256(chain[i-1] + " " + diff[i])``."""
    out: list[str] = []
    for d in diff_ids:
        out.append(d if not out else "sha256:" + hashlib.sha256(f"{out[-1]} {d}".encode()).hexdigest())
    return out




def dumps(doc: Any) -> bytes:
    """Canonical compact JSON (stable bytes, so stable digests) for image configs."""
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def oci_manifest(content: ContentStore, image: Image) -> bytes:
    """An OCI image manifest of ``image`` over its uncompressed layers, as this store holds them
    (config and layers are content blobs): what a saved layout or a local index lists.

    .. versionadded:: 0.3
    """
    doc = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": image.id,
                      "size": content.size(image.id)},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": content.size(d)}
                      for d in image.layers]}
    return json.dumps(doc, separators=(",", ":")).encode()


class Images(Protocol):
    """What the fronts, the puller and the builder may ask of the ``images`` service.

    ``ref`` is an image ID (or unique prefix), a digest reference or a name[:tag].
    """

    @property
    def content(self) -> ContentStore:
        """The content store of blobs (layers as diff IDs, configs, manifests)."""
        ...

    async def driver(self) -> LayerDriver:
        """The layer driver the images live in (ready)."""
        ...

    # -- reading
    def list(self) -> list[Image]: ...
    def get(self, image_id: str) -> Image: ...
    def resolve(self, ref: str) -> Image: ...
    def config_doc(self, image: Image) -> dict[str, Any]: ...
    def history(self, ref: str) -> list[dict[str, Any]]: ...
    def df(self) -> dict[str, Any]: ...
    async def has_layer(self, chain_id: str) -> bool:
        """The layer ``chain_id`` is recorded and its driver holds it (a pull can skip it)."""
        ...

    # -- making images
    async def install(self, plans: list[Plan], source: str, progress: Progress | None = None) -> list[Installed]: ...
    async def load(self, source: Any, progress: Progress | None = None) -> list[str]: ...
    async def import_image(self, source: Any, *, repo: str = "", tag: str = "", changes: Iterable[str] = (),
                           message: str = "", src: str = "-", progress: Progress | None = None) -> Image: ...
    async def bootstrap(self, name: str = "busybox", busybox: str = "/bin/busybox", platform: str = "") -> Image:
        """dockyard's offline busybox image; ``platform`` (0.3, ``linux/arm64``): from that
        architecture's busybox-static, added to the tag's index (:meth:`add_to_tag`)."""
        ...

    async def commit(self, layer_key: str = "", **kwargs: Any) -> Image: ...
    async def prepare_rootfs(self, key: str, image_ref: str) -> str: ...
    async def remove_rootfs(self, key: str) -> None: ...
    def store_put(self, image: Image) -> None:
        """Record changed metadata of an image (e.g. a repo digest after a pull)."""
        ...

    # -- names and removal
    async def tag(self, source: str, repo: str, tag: str = "") -> Image: ...
    async def remove(self, ref: str, force: bool = False, prune: bool = True) -> list[dict[str, str]]: ...
    async def prune(self, dangling_only: bool = True, match: Callable[[Image], bool] | None = None
                    ) -> tuple[list[dict[str, str]], int]: ...
    def save_stream(self, names: list[str]) -> AsyncIterator[bytes]: ...

    # -- multi-platform images (versionadded 0.3)
    def indexes(self) -> list[ImageIndex]:
        """Every image index held (tagged, or kept by its members)."""
        ...

    def index_of(self, ref: str) -> ImageIndex | None:
        """The index ``ref`` (name[:tag], name@digest, index digest) names, else None."""
        ...

    async def add_to_tag(self, tag: str, image: Image, source: str = "local") -> ImageIndex:
        """Make ``tag`` name an index holding ``image`` besides what it names now (the entry of
        ``image``'s platform replaced): a bootstrap or a build for another platform."""
        ...

    def resolve_platform(self, ref: str, platform: str) -> Image:
        """The image ``ref`` names for ``platform`` (``linux/arm64``): the best present member
        of its index by containerd's matching, else the image itself when its platform runs
        it; NotFound with dockerd's wording otherwise (so a client pulls that platform)."""
        ...

    async def record_index(self, raw: bytes, media_type: str, tags: list[str], members: dict[str, str],
                           source: str = "pull") -> ImageIndex:
        """Keep index ``raw`` (its bytes; ``members``: manifest digest -> local image ID now
        present) under ``tags`` (normalized; taken from any other index). Members get the
        repository digest ``name@<index digest>``; each tag's image becomes the present member
        this host runs best."""
        ...


__all__ = ["ImageIndex", "ImageLayer", "Images", "IndexEntry", "Installed", "Layer", "Plan", "Progress",
           "chain_ids", "dumps", "oci_manifest"]
