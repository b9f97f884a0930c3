r"""Windows image layers in the storage path: a tar importer and the windowsfilter layout.

A Windows layer tar (as ``docker save`` of a Windows image holds it) has three top-level
trees: ``Files/`` (the container's ``C:\``), ``Hives/`` (registry hive deltas) and, in base
layers, ``UtilityVM/`` (the utility VM image Hyper-V isolation boots). A deletion is a Docker
whiteout ``Files/dir/.wh.NAME``; Windows has no opaque directories. Writers on Windows may use
``\`` as the separator (``Files\Windows\System32``).

:func:`import_layer` is the pure-logic half of hcsshim's ``wclayer.ImportLayer`` (its
legacy layer writer): names are normalized to ``/`` and checked *before* anything is written
(absolute, drive-letter (``C:``), UNC and ``..`` names and anything outside the three trees
are refused: a ``Files\..\..\x`` is one harmless file name on Linux but an escape on Windows),
then the tar goes through core :mod:`dockyard.tarsafe` (no member through a symlink, no hard
link out, no devices), whiteouts are not applied to disk but written as the layer's
``tombstones.txt`` (the legacy writer's format), and ``layerchain.json`` names the parents.

:func:`scratch_layer` makes a container's scratch directory (``layerchain.json`` = the image's
layers, topmost first): what the storage path hands the runtime driver as the rootfs. The
sandbox VHDX itself (``HcsInitializeWritableLayer``) needs a Windows host.

Blocking: call from a thread.
"""

from __future__ import annotations

import copy
import json
import os
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from dockyard import tarsafe
from dockyard.tarsafe import ArchiveError, UnsafeArchive

TREES = ("Files", "Hives", "UtilityVM")
LAYERCHAIN = "layerchain.json"
TOMBSTONES = "tombstones.txt"
TOMBSTONES_HEADER = "\ufeffVersion 1.0\n"
WHITEOUT = ".wh."
OPAQUE = ".wh..wh..opq"


@dataclass
class WindowsLayer:
    r"""What :func:`import_layer` made: the layer directory, whether it is a base layer (it
    carries a ``UtilityVM``), its whiteouts as Windows paths (``\Files\dir\name``), and the
    member count."""

    path: Path
    base: bool
    whiteouts: list[str] = field(default_factory=list)
    parents: list[str] = field(default_factory=list)
    members: int = 0

    @property
    def has_utility_vm(self) -> bool:
        return (self.path / "UtilityVM" / "Files").is_dir()


def normalize(name: str) -> str:
    r"""A member name with ``\`` as ``/``, checked: relative, no drive letter or UNC prefix, no
    ``..``, inside ``Files/``, ``Hives/`` or ``UtilityVM/`` (the tree names themselves are fine;
    case as Windows: ``files/`` is ``Files/``)."""
    if "\x00" in name:
        raise UnsafeArchive(name, "name contains a NUL byte")
    norm = name.replace("\\", "/")
    if norm.startswith("//") or norm.startswith("/"):
        raise UnsafeArchive(name, "absolute path")
    if len(norm) >= 2 and norm[1] == ":":
        raise UnsafeArchive(name, "drive-letter path")
    parts = tarsafe.split_name(norm, name)
    if not parts:
        return ""
    if any(":" in p for p in parts):
        raise UnsafeArchive(name, "':' in a name (an alternate data stream or a drive)")
    top = next((t for t in TREES if t.lower() == parts[0].lower()), None)
    if top is None:
        raise UnsafeArchive(name, f"outside {', '.join(t + '/' for t in TREES)}: not a Windows layer")
    return "/".join([top, *parts[1:]])


class _Tombstones:
    """A :class:`tarsafe.WhiteoutStrategy` recording whiteouts instead of applying them."""

    def __init__(self) -> None:
        self.removed: list[str] = []

    def whiteout(self, root: Path, rel: str) -> None:
        if not rel.startswith("Files/"):
            raise UnsafeArchive(rel, "a whiteout outside Files/")
        self.removed.append("\\" + rel.replace("/", "\\"))

    def opaque(self, root: Path, rel_dir: str, unpacked: set[str]) -> None:
        raise ArchiveError(rel_dir + "/" + OPAQUE, "opaque whiteouts do not exist in Windows layers")


def _rewrite(src: str, members: list[tuple[tarfile.TarInfo, str]], dest: str) -> None:
    """Copy the tar with normalized names (and link targets of hard links)."""
    with tarfile.open(src, "r:") as tin, tarfile.open(dest, "w:", format=tarfile.PAX_FORMAT) as tout:
        for member, norm in members:
            info = copy.copy(member)
            info.name = norm
            if member.islnk():
                info.linkname = normalize(member.linkname)
            elif member.issym():
                info.linkname = member.linkname.replace("\\", "/")
            data = tin.extractfile(member) if member.isfile() else None
            tout.addfile(info, data)


def import_layer(tar_path: str | os.PathLike[str], dest: str | os.PathLike[str],
                 parents: list[str] | None = None) -> WindowsLayer:
    """Import the uncompressed Windows layer tar ``tar_path`` into the new directory ``dest``
    (all or nothing); ``parents`` are the parent layer directories, nearest first. Raises
    :class:`~dockyard.tarsafe.UnsafeArchive` / :class:`~dockyard.tarsafe.ArchiveError`
    (InvalidArgument) naming the member."""
    dest = Path(dest)
    parents = list(parents or [])
    members: list[tuple[tarfile.TarInfo, str]] = []
    rewrite = False
    try:
        with tarfile.open(tar_path, "r:") as tf:
            for member in tf:
                norm = normalize(member.name)
                if member.islnk():
                    normalize(member.linkname)  # a hard link stays inside the layer's trees
                if norm.rsplit("/", 1)[-1] == OPAQUE:
                    raise ArchiveError(member.name, "opaque whiteouts do not exist in Windows layers")
                if member.isdev():
                    raise UnsafeArchive(member.name, "device nodes do not exist in Windows layers")
                rewrite = rewrite or norm != member.name.rstrip("/") or "\\" in member.linkname
                members.append((member, norm))
    except tarfile.TarError as exc:
        raise ArchiveError(None, str(exc)) from exc
    tomb = _Tombstones()
    with tempfile.TemporaryDirectory(prefix=".wclayer-", dir=dest.parent) as tmp:
        src = str(tar_path)
        if rewrite:
            src = os.path.join(tmp, "normalized.tar")
            _rewrite(str(tar_path), members, src)
        with tarsafe.staging_dir(dest) as stage:
            tarsafe.extract(src, stage, whiteouts=tomb, allow_devices=False)
            if tomb.removed:
                (stage / TOMBSTONES).write_text(TOMBSTONES_HEADER + "".join(p + "\n" for p in tomb.removed),
                                                encoding="utf-8")
            (stage / LAYERCHAIN).write_text(json.dumps(parents))
    base = (dest / "UtilityVM").is_dir() or not parents
    return WindowsLayer(dest, base, tomb.removed, parents, len(members))


def read_tombstones(layer: str | os.PathLike[str]) -> list[str]:
    """The whiteouts a layer recorded (Windows paths), [] for none."""
    path = Path(layer) / TOMBSTONES
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    if not text.startswith(TOMBSTONES_HEADER):
        raise ArchiveError(str(path), "not a tombstones file")
    return [line for line in text[len(TOMBSTONES_HEADER):].splitlines() if line]


def scratch_layer(dest: str | os.PathLike[str], chain: list[str]) -> Path:
    """A container's scratch directory over ``chain`` (the image's layer directories, topmost
    first; the base layer last): what the runtime driver gets as ``rootfs``."""
    if not chain:
        raise ArchiveError(None, "a Windows container needs at least a base layer")
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=False)
    (dest / LAYERCHAIN).write_text(json.dumps([str(p) for p in chain]))
    return dest
