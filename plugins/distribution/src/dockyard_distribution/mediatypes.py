"""Manifest media types (docker v2 schema 2 and OCI) and platform selection in indexes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from dockyard.errors import InvalidArgument, NotFound

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
DOCKER_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+json"
DOCKER_SCHEMA1_SIGNED = "application/vnd.docker.distribution.manifest.v1+prettyjws"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
OCI_LAYER_NONDIST_GZIP = "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"

MANIFESTS = frozenset({DOCKER_MANIFEST, OCI_MANIFEST})
INDEXES = frozenset({DOCKER_LIST, OCI_INDEX})
#: What we send in ``Accept`` when fetching a manifest (most wanted first).
ACCEPT = (DOCKER_MANIFEST, DOCKER_LIST, OCI_MANIFEST, OCI_INDEX)
#: Layer media types we can unpack, and how they are compressed.
LAYER_COMPRESSION = {
    DOCKER_LAYER: "gzip",
    DOCKER_FOREIGN_LAYER: "gzip",
    OCI_LAYER: "none",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_NONDIST_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
}


class UnsupportedManifest(InvalidArgument):
    """A manifest of a media type (or schema) we do not pull."""


def detect_media_type(body: bytes, header: str = "") -> str:
    """The manifest's media type: the ``mediaType`` field, else the Content-Type, else guessed
    from the shape (OCI manifests may omit ``mediaType``)."""
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise UnsupportedManifest(f"manifest is not JSON: {exc}") from exc
    if not isinstance(doc, dict):
        raise UnsupportedManifest("manifest is not a JSON object")
    mt = doc.get("mediaType") or ""
    if not mt:
        header = header.split(";")[0].strip()
        if header in MANIFESTS | INDEXES:
            mt = header
        elif doc.get("schemaVersion") == 1:
            mt = DOCKER_SCHEMA1
        elif "manifests" in doc:
            mt = OCI_INDEX
        elif "config" in doc and "layers" in doc:
            mt = OCI_MANIFEST
        else:
            mt = header
    return mt


def check_manifest_type(media_type: str, ref: str) -> None:
    if media_type in (DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED):
        raise UnsupportedManifest(
            f"{ref}: docker image manifest schema 1 is not supported (deprecated since docker 20.10); "
            "push the image again with a current client")
    if media_type not in MANIFESTS | INDEXES:
        raise UnsupportedManifest(f"{ref}: unsupported manifest media type {media_type!r}")


# ---------------------------------------------------------------------------------------------
# Platforms

@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def parse(cls, text: str) -> Platform:
        """``linux/arm64/v8``, ``linux/amd64``, ``arm64`` (os defaults to linux): core's
        :func:`dockyard.platforms.parse` (containerd's ``Parse``), normalized."""
        from dockyard import platforms

        p = platforms.parse(text.strip().lower()).normalized()
        return cls(p.os, p.architecture, p.variant)

    @classmethod
    def from_descriptor(cls, plat: dict[str, Any]) -> Platform:
        return cls(str(plat.get("os") or ""), str(plat.get("architecture") or ""),
                   str(plat.get("variant") or "")).normalized()

    def core(self) -> Any:
        from dockyard import platforms

        return platforms.Platform(self.os, self.architecture, self.variant)

    def normalized(self) -> Platform:
        from dockyard import platforms

        p = platforms.normalize(self.core())
        return Platform(p.os, p.architecture, p.variant)

    def matches(self, other: Platform) -> bool:
        """Whether an image built for ``other`` runs where ``self`` is asked for (containerd's
        ``Only``: exact, or a platform it also runs: arm64 takes arm/v7, amd64 takes 386)."""
        from dockyard import platforms

        return platforms.only(self.core()).match(other.core())


def host_platform() -> Platform:
    from dockyard import platforms

    p = platforms.host()
    return Platform(p.os, p.architecture, p.variant)


def select_manifest(index: dict[str, Any], want: Platform, ref: str) -> dict[str, Any]:
    """The descriptor of ``index`` for platform ``want``: containerd's ``Only(want)`` order
    (the exact platform, then what it also runs); attestation manifests (``unknown/unknown``,
    or annotated ``vnd.docker.reference.type``) are never chosen. Raises NotFound with
    dockerd's message when nothing matches."""
    from dockyard import platforms

    candidates = []
    for desc in index.get("manifests") or []:
        if not isinstance(desc, dict):
            continue
        if "vnd.docker.reference.type" in (desc.get("annotations") or {}):
            continue
        if desc.get("mediaType") and desc["mediaType"] not in MANIFESTS:
            continue
        if isinstance(desc.get("platform"), dict):
            candidates.append(desc)
    best = platforms.only(want.core()).best(candidates, key=lambda d: platforms.Platform.from_descriptor(d["platform"]))
    if best is None:
        raise NotFound(platforms.no_match_message(want.core()))
    return best


def index_platforms(index: dict[str, Any]) -> list[dict[str, str]]:
    """The ``Platforms`` of ``GET /distribution/{name}/json`` for an index."""
    out = []
    for desc in index.get("manifests") or []:
        plat = (desc or {}).get("platform")
        if isinstance(plat, dict) and "vnd.docker.reference.type" not in (desc.get("annotations") or {}):
            item = {"architecture": plat.get("architecture", ""), "os": plat.get("os", "")}
            for k, key in (("variant", "variant"), ("os.version", "os.version"), ("os.features", "os.features")):
                if plat.get(k):
                    item[key] = plat[k]
            out.append(item)
    return out
