"""Portable checkpoint archives in the layout podman and the kubelet use (``checkpointctl``
reads it), so an archive written by one engine restores on another.

Members (a tar, gzip- or zstd-compressed or plain)::

    checkpoint/        CRIU's images (``inventory.img`` last: a complete dump)
    config.dump        the engine's container config, JSON (podman: libpod's ContainerConfig:
                       id, name, rootfsImageID, rootfsImageName, runtime, createdTime,
                       newNetworks ...); ours adds the whole container under "dockyard"
    spec.dump          the OCI runtime spec the container ran with
    network.status     per network: {"interfaces": {"eth0": {"subnets": [{"ipnet": "A/N",
                       "gateway": G}], "mac_address": M}}} (netavark's status block)
    rootfs-diff.tar    new or changed files of the writable layer (no whiteouts)
    deleted.files      JSON list of the paths the writable layer deleted
    volumes/NAME.tar   the named volumes' contents (unless left out)

Other members (``stats-dump``, ``ctr.log``, ``devshm-checkpoint.tar``, ``artifacts/``,
``pod.*``) are kept in the extracted tree and otherwise ignored.

Reading is hostile-archive safe: the outer archive may hold only regular files and
directories (a symlink, hard link, device, absolute name or ``..`` is refused, through
:mod:`dockyard.tarsafe`'s rules), and the inner tars are extracted with
:func:`dockyard.tarsafe.extract` into the container's root. Everything here blocks: call it
from a thread.

.. versionadded:: 0.3
"""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from dockyard.errors import InvalidArgument

CHECKPOINT_DIR = "checkpoint"
CONFIG_DUMP = "config.dump"
SPEC_DUMP = "spec.dump"
NETWORK_STATUS = "network.status"
ROOTFS_DIFF = "rootfs-diff.tar"
DELETED_FILES = "deleted.files"
VOLUMES_DIR = "volumes"
#: our own container document inside config.dump (podman ignores unknown keys)
DOCKYARD_KEY = "dockyard"
#: the default network of each engine: ours ``bridge`` is podman's ``podman``
DEFAULT_NETWORKS = {"bridge": "podman"}

#: block size of the archive's tar streams written by an export
STREAM_BUFSIZE = 1 << 20
#: tarfile's read buffer when an import or a migration's target unpacks a stream: its stream
#: reader copies what remains of that buffer after every read, so a 1 MiB buffer cost up to
#: 1 MiB of copying per 512-byte member header (a lazy migration's ~30-member, 1 MiB archive
#: unpacked in 20-27 ms inside the frozen window, ~3.5 ms with 64 KiB; a 256 MiB one also
#: faster: 118-128 ms against 138-149)
EXTRACT_BUFSIZE = 64 << 10

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


@dataclass(frozen=True)
class Address:
    """One interface's addresses on a network, as ``network.status`` records them."""

    ipnet: str  # "10.88.0.5/16"
    gateway: str = ""
    mac: str = ""
    interface: str = "eth0"

    @property
    def ip(self) -> str:
        return self.ipnet.split("/", 1)[0]


def network_status(addresses: dict[str, Address]) -> dict[str, Any]:
    """``network.status`` for ``{network name: address}``."""
    out: dict[str, Any] = {}
    for net, a in addresses.items():
        iface: dict[str, Any] = {"subnets": [{"ipnet": a.ipnet, **({"gateway": a.gateway} if a.gateway else {})}]}
        if a.mac:
            iface["mac_address"] = a.mac
        out[net] = {"interfaces": {a.interface: iface}}
    return out


def read_network_status(data: dict[str, Any]) -> dict[str, Address]:
    """``{network name: first address}`` from a ``network.status`` document (netavark's
    layout; CNI's list form of podman 3 gives nothing)."""
    out: dict[str, Address] = {}
    if not isinstance(data, dict):
        return out
    for net, block in data.items():
        for name, iface in ((block or {}).get("interfaces") or {}).items():
            subnets = iface.get("subnets") or []
            if subnets:
                out[net] = Address(ipnet=str(subnets[0].get("ipnet") or ""), gateway=str(subnets[0].get("gateway") or ""),
                                   mac=str(iface.get("mac_address") or ""), interface=name)
                break
    return out


def config_dump(*, container_id: str, name: str, image_id: str, image_name: str, runtime: str,
                created: str, command: list[str], networks: Iterable[str], spec: dict[str, Any],
                ours: dict[str, Any] | None = None) -> dict[str, Any]:
    """A ``config.dump`` podman 4 reads (the libpod ContainerConfig fields its import uses),
    with our container document under :data:`DOCKYARD_KEY`. ``image_id`` without ``sha256:``
    (podman's form); ``networks`` by our names (the default one is renamed to podman's)."""
    nets = {DEFAULT_NETWORKS.get(n, n): {"interface_name": f"eth{i}"} for i, n in enumerate(networks)}
    out: dict[str, Any] = {
        "spec": spec, "id": container_id, "name": name,
        "rootfsImageID": image_id.removeprefix("sha256:"), "rootfsImageName": image_name, "RawImageName": image_name,
        "runtime": runtime, "createdTime": created, "command": command, "stopSignal": 15, "stopTimeout": 10,
        "createNetNS": bool(nets), "networkMode": "bridge" if nets else "none", "newNetworks": nets or None,
        "logDriver": "k8s-file", "cgroupManager": "cgroupfs", "umask": "0022",
    }
    if ours is not None:
        out[DOCKYARD_KEY] = ours
    return out


def container_documents(c: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """``config.dump`` and ``network.status`` of our container ``c`` (a
    :class:`dockyard.model.Container`) that ran with the OCI ``spec``, by member name."""
    from dockyard.model import to_dict

    addresses = {name: Address(ipnet=f"{ep.ipv4_address}/{ep.ip_prefix_len}", gateway=ep.gateway,
                               mac=ep.mac_address)
                 for name, ep in c.networks.items() if ep.ipv4_address}
    dump = config_dump(container_id=c.id, name=c.name, image_id=c.image_id, image_name=c.config.image,
                       runtime=c.host_config.runtime, created=c.created,
                       command=list(c.config.entrypoint) + list(c.config.cmd), networks=list(c.networks),
                       spec=spec, ours=to_dict(c))
    return {CONFIG_DUMP: dump, NETWORK_STATUS: network_status(addresses)}


def layer_to_rootfs_diff(layer_tar: str | os.PathLike[str], out_tar: str | os.PathLike[str],
                         root_mode: int | None = None) -> list[str]:
    """Turn a Docker layer tar (whiteouts ``.wh.NAME``) into podman's ``rootfs-diff.tar`` and
    the list of deleted paths (``deleted.files``: absolute paths in the container).
    ``root_mode``: the container root's mode, written as a ``./`` entry (CRIU checks the mode
    of the root it restores into, and engines give a container's root different modes)."""
    deleted: list[str] = []
    with tarfile.open(os.fspath(layer_tar), "r:") as src, \
            tarfile.open(os.fspath(out_tar), "w", format=tarfile.PAX_FORMAT) as dst:
        if root_mode is not None:
            root = tarfile.TarInfo("./")
            root.type, root.mode = tarfile.DIRTYPE, root_mode & 0o7777
            dst.addfile(root)
        for m in src:
            head, _, base = m.name.rstrip("/").rpartition("/")
            if base == ".wh..wh..opq":
                continue  # an opaque directory: its new content is in the diff already
            if base.startswith(".wh."):
                deleted.append("/" + (head + "/" if head else "") + base[4:])
                continue
            dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    return deleted


def write_archive(staging: str | os.PathLike[str], out: str | os.PathLike[str] | BinaryIO,
                  compression: str = "gzip") -> None:
    """Tar the staging directory's members (``compression``: gzip or none) into ``out``."""
    if compression not in ("gzip", "none"):
        raise InvalidArgument(f"unsupported compression {compression!r} (gzip or none)")
    raw: BinaryIO = open(out, "wb") if isinstance(out, (str, os.PathLike)) else out  # noqa: SIM115
    try:
        stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=1) if compression == "gzip" else raw  # type: ignore[assignment]
        # 1 MiB blocks and copies (tarfile's 10 and 16 KiB cost more than the bytes at 256 MiB)
        with tarfile.open(fileobj=stream, mode="w|", format=tarfile.PAX_FORMAT, bufsize=STREAM_BUFSIZE,
                          copybufsize=STREAM_BUFSIZE) as tf:  # a FIFO too
            root = Path(staging)
            for entry in sorted(root.iterdir()):
                tf.add(str(entry), arcname=entry.name, recursive=True)
        if stream is not raw:
            stream.close()
    finally:
        if raw is not out:
            raw.close()


@dataclass
class Archive:
    """An extracted archive: its directory and the documents it holds."""

    root: Path
    config: dict[str, Any] = field(default_factory=dict)
    spec: dict[str, Any] = field(default_factory=dict)
    networks: dict[str, Address] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)

    @property
    def images(self) -> Path:
        return self.root / CHECKPOINT_DIR

    @property
    def rootfs_diff(self) -> Path | None:
        p = self.root / ROOTFS_DIFF
        return p if p.is_file() else None

    @property
    def ours(self) -> dict[str, Any] | None:
        doc = self.config.get(DOCKYARD_KEY)
        return doc if isinstance(doc, dict) else None

    def volumes(self) -> dict[str, Path]:
        d = self.root / VOLUMES_DIR
        return {p.name.removesuffix(".tar"): p for p in sorted(d.glob("*.tar"))} if d.is_dir() else {}


def _decompressed(path: str | os.PathLike[str]) -> BinaryIO:
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic.startswith(GZIP_MAGIC):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    if magic == ZSTD_MAGIC:
        zstd = shutil.which("zstd")
        if zstd is None:
            raise InvalidArgument("the archive is zstd-compressed and the zstd program is not installed "
                                  "(apt-get install zstd)")
        proc = subprocess.run([zstd, "-dc", os.fspath(path)], capture_output=True, check=False)
        if proc.returncode != 0:
            raise InvalidArgument(f"cannot decompress the archive: {proc.stderr.decode(errors='replace').strip()}")
        return io.BytesIO(proc.stdout)
    return open(path, "rb")


def read_archive(path: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Archive:
    """Extract the archive at ``path`` into the empty directory ``dest`` and read its
    documents. Refuses (InvalidArgument) anything but plain files and directories, names that
    are absolute or climb out, and an archive without ``checkpoint/inventory.img`` or
    ``config.dump``."""
    if os.path.isdir(path):  # already extracted (a migration unpacks its stream): read in place
        return _documents(Path(path))
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    with _decompressed(path) as raw:
        extract_stream(raw, root)
    return _documents(root)


def extract_stream(src: Any, root: Path, what: str = "checkpoint archive") -> None:
    """Unpack the (uncompressed) tar stream ``src`` into ``root``, reading it once from start to
    end: plain files and directories only (links and devices are refused), no name absolute or
    climbing out of ``root``."""
    from dockyard import tarsafe

    with tarfile.open(fileobj=src, mode="r|", bufsize=EXTRACT_BUFSIZE) as tf:
        for m in tf:
            if not (m.isfile() or m.isdir()):
                raise InvalidArgument(f"{what} member {m.name!r}: only files and directories are "
                                      "allowed (links and devices are refused)")
            parts = tarsafe.split_name(m.name, m.name)  # refuses absolute names, "..", NUL
            if not parts:
                continue
            target = tarsafe.secure_join(root, "/".join(parts))
            if m.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            f = tf.extractfile(m)
            with open(target, "wb") as out:
                if f is not None:
                    shutil.copyfileobj(f, out, 1 << 20)
            os.chmod(target, m.mode & 0o777)


def read_documents(root: str | os.PathLike[str]) -> Archive:
    """The documents of an archive extracted (or being received) into the directory ``root``,
    whether or not its CRIU images are there yet (a migration's target prepares the container
    from them before the source freezes it)."""
    return _documents(Path(root), images=False)


def _documents(root: Path, images: bool = True) -> Archive:
    if images and not (root / CHECKPOINT_DIR / "inventory.img").is_file():
        raise InvalidArgument("not a checkpoint archive: no checkpoint/inventory.img")
    if not (root / CONFIG_DUMP).is_file():
        raise InvalidArgument("not a checkpoint archive: no config.dump")
    arc = Archive(root=root, config=_json(root / CONFIG_DUMP, {}), spec=_json(root / SPEC_DUMP, {}))
    arc.networks = read_network_status(_json(root / NETWORK_STATUS, {}))
    deleted = _json(root / DELETED_FILES, [])
    arc.deleted = [str(p) for p in deleted] if isinstance(deleted, list) else []
    return arc


def _json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return default
    except ValueError as exc:
        raise InvalidArgument(f"checkpoint archive: {path.name} is not JSON: {exc}") from exc


def apply_rootfs_diff(arc: Archive, rootfs: str | os.PathLike[str]) -> None:
    """Apply ``rootfs-diff.tar`` and ``deleted.files`` to a mounted container root (through
    :mod:`dockyard.tarsafe`: nothing lands outside ``rootfs``)."""
    from dockyard import tarsafe

    if arc.rootfs_diff is not None:
        tarsafe.extract(arc.rootfs_diff, rootfs)
    for rel in arc.deleted:
        head, _, name = rel.rstrip("/").rpartition("/")
        if not name or name in (".", ".."):
            continue
        target = tarsafe.secure_join(rootfs, head or "/") / name  # the link itself, never its target
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            try:
                target.unlink()
            except FileNotFoundError:
                pass
