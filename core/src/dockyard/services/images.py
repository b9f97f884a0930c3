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
    async def bootstrap(self, name: str = "busybox", busybox: str = "/bin/busybox") -> Image: ...
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


__all__ = ["ImageLayer", "Images", "Installed", "Layer", "Plan", "Progress", "chain_ids", "dumps"]
