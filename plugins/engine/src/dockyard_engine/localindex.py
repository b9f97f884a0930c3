"""Images of several platforms made here, gathered under one tag as a local image index (issue 19
items 2-3): ``dockyard image bootstrap busybox --platform linux/arm64`` and the builder's
multi-platform build add each platform's image to the index the tag names (or start one from
the image the tag names now), through :meth:`ImageService.record_index` like a pulled index.

Also the offline busybox of a foreign architecture: Debian's ``busybox-static`` for arm64 and
armhf, fetched once by ``make install`` (``tools/foreign-busybox.sh``) into
:func:`busybox_dir` ``/<arm64|arm-v7>/busybox``.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard import platforms
from dockyard.errors import InvalidArgument, NotFound
from dockyard.model import Image
from dockyard.services.images import ImageIndex, IndexEntry

if TYPE_CHECKING:
    from dockyard_engine.images import ImageService

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
#: ELF e_machine per OCI architecture (what a busybox binary must be to be tagged so).
ELF_MACHINES = {"amd64": 0x3E, "386": 0x03, "arm64": 0xB7, "arm": 0x28, "riscv64": 0xF3, "ppc64le": 0x15,
                "s390x": 0x16}
#: OCI architecture -> qemu-user's machine name (for running a foreign busybox ``--list``).
QEMU = {"arm64": "aarch64", "arm": "arm", "riscv64": "riscv64", "ppc64le": "ppc64le", "s390x": "s390x",
        "amd64": "x86_64", "386": "i386"}


def busybox_dir() -> Path:
    return Path(os.environ.get("DOCKYARD_BUSYBOX_DIR") or "/var/cache/dockyard/busybox")


def elf_machine(path: str) -> int:
    """The ELF ``e_machine`` of ``path`` (0 when it is no ELF)."""
    with open(path, "rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != b"\x7fELF":
        return 0
    return int.from_bytes(head[18:20], "big" if head[5] == 2 else "little")


def foreign_busybox(plat: platforms.Platform) -> str:
    """The cached static busybox for ``plat`` (``<dir>/arm64/busybox``, ``<dir>/arm-v7/busybox``)."""
    name = plat.architecture + (f"-{plat.variant}" if plat.variant else "")
    path = busybox_dir() / name / "busybox"
    if not path.is_file():
        raise NotFound(f"no busybox for {plat} in {path.parent}: run `make install` (tools/foreign-busybox.sh "
                       f"fetches Debian's busybox-static for arm64 and armhf)")
    return str(path)


def check_binary(path: str, plat: platforms.Platform) -> None:
    want = ELF_MACHINES.get(plat.architecture)
    got = elf_machine(path)
    if want is not None and got != want:
        raise InvalidArgument(f"{path} is not a {plat} executable (ELF machine {got:#x}, {plat} is {want:#x})")


def runner(plat: platforms.Platform) -> list[str]:
    """How to run a busybox of ``plat`` on this host for ``--list``: directly when native, else
    through qemu-user (no binfmt registration needed)."""
    if platforms.only(platforms.host()).match(plat):
        return []
    qemu = shutil.which(f"qemu-{QEMU.get(plat.architecture, plat.architecture)}-static")
    if qemu is None:
        raise NotFound(f"qemu-{QEMU.get(plat.architecture, plat.architecture)}-static not found: install "
                       f"qemu-user-static to bootstrap a {plat} image")
    return [qemu]


def image_platform(image: Image) -> platforms.Platform:
    return platforms.normalize(platforms.Platform(image.os or "linux", image.architecture, image.variant or ""))


def _descriptor(svc: ImageService, image: Image) -> tuple[dict, str]:
    from dockyard.content import digest_bytes
    from dockyard_engine import imageindex

    raw = imageindex._manifest_of(svc, image)
    digest = digest_bytes(raw)
    if not svc.content.exists(digest):
        svc.content.put(raw, digest)
    plat = image_platform(image)
    return {"mediaType": OCI_MANIFEST, "digest": digest, "size": len(raw), "platform": plat.descriptor()}, digest


async def add_to_tag(svc: ImageService, tag: str, image: Image, source: str = "build") -> ImageIndex:
    """Put ``image`` in the index ``tag`` names, replacing the entry of the same platform; a tag
    on a single image starts an index of that image and ``image`` (when their platforms differ).
    The tag then names the new index (the image this host runs best carries it)."""
    import asyncio

    want = image_platform(image)
    entries: list[tuple[dict, str, str]] = []  # (descriptor, digest, image id)
    ix = svc.index_of(tag)
    if ix is not None:
        for e in ix.manifests:
            if e.image_id and platforms.normalize(platforms.Platform.from_descriptor(e.platform)) != want:
                try:
                    entries.append((_desc_of_entry(e), e.digest, svc.store.get(Image, e.image_id).id))
                except NotFound:
                    continue
    else:
        try:
            cur = svc.resolve(tag)
        except NotFound:
            cur = None
        if cur is not None and cur.id != image.id and image_platform(cur) != want:
            d, digest = await asyncio.to_thread(_descriptor, svc, cur)
            entries.append((d, digest, cur.id))
    d, digest = await asyncio.to_thread(_descriptor, svc, image)
    entries.append((d, digest, image.id))
    doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [e[0] for e in entries]}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return await svc.record_index(raw, OCI_INDEX, [tag], {e[1]: e[2] for e in entries})


def _desc_of_entry(e: IndexEntry) -> dict:
    d = {"mediaType": e.media_type or OCI_MANIFEST, "digest": e.digest, "size": e.size, "platform": dict(e.platform)}
    if e.annotations:
        d["annotations"] = dict(e.annotations)
    return d


__all__ = ["add_to_tag", "busybox_dir", "check_binary", "elf_machine", "foreign_busybox", "runner"]
