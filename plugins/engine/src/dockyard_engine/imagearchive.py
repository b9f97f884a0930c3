"""Image archives: reading ``docker save``/``podman save`` (docker-archive) and OCI image layout
tars into a private staging directory, and writing docker-archives.

Reading is one sequential pass over the archive (it may be an HTTP body): every member is hashed
while it is read; small members stay in memory, big ones (layers) are written to the staging
directory. Nothing becomes visible here: the image service checks every digest the manifests
and configs name, applies the layers and only then moves the blobs into the content store.

The outer archive is held to the same rules as a layer: no absolute names, no ``..``, no
duplicate entries, links only to other members, no devices, nothing after a corrupt header.
Everything here blocks: call it from a thread.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import gzip
import hashlib
import json
import os
import posixpath
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from dockyard.errors import InvalidArgument
from dockyard.services.images import Layer, dumps  # noqa: F401 - dumps re-exported
from dockyard.tarsafe import ArchiveError, split_name

#: Members up to this size are kept in memory (configs, manifests, small layers).
MEMORY_LIMIT = 1 << 20
#: JSON documents larger than this are refused (a manifest or config is a few KB).
MAX_JSON = 16 << 20
_CHUNK = 1 << 20
_TAIL = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"

Progress = Callable[[dict[str, Any]], None]


class ImageArchiveError(InvalidArgument):
    """An image archive that is malformed, inconsistent or unsafe."""


class Readable(Protocol):
    def read(self, n: int = -1) -> bytes: ...


class _TailReader:
    """Hands the source's bytes to :mod:`tarfile`, counting them and keeping the last ones, so
    that what follows the last member tarfile accepted can be checked (it stops silently at a
    corrupt header)."""

    def __init__(self, source: Readable) -> None:
        self._src = source
        self.total = 0
        self._tail = bytearray()

    def read(self, n: int = -1) -> bytes:
        data = self._src.read(n if n is not None and n >= 0 else _CHUNK)
        if data:
            self.total += len(data)
            self._tail += data
            if len(self._tail) > 2 * _TAIL:
                del self._tail[:-_TAIL]
        return data

    def after(self, offset: int) -> bytes:
        """The bytes from ``offset`` to what was read so far (if still in the tail)."""
        start = self.total - len(self._tail)
        if offset < start:
            return b""
        return bytes(self._tail[offset - start:])


@dataclass
class Member:
    """One regular file of the archive, as read."""

    name: str
    digest: str  # "sha256:" of the bytes as in the archive
    size: int
    data: bytes | None = None  # small members
    path: Path | None = None  # big members, in the staging directory

    @property
    def compression(self) -> str:
        head = self.head()
        if head[:2] == GZIP_MAGIC:
            return "gzip"
        if head[:4] == ZSTD_MAGIC:
            return "zstd"
        return ""

    def head(self) -> bytes:
        if self.data is not None:
            return self.data[:4]
        assert self.path is not None
        with open(self.path, "rb") as f:
            return f.read(4)

    def open(self) -> BinaryIO:
        if self.data is not None:
            import io

            return io.BytesIO(self.data)
        assert self.path is not None
        return open(self.path, "rb")




@dataclass
class Ingest:
    """The members of one archive, read into ``staging`` (a private directory)."""

    staging: Path
    progress: Progress | None = None
    members: dict[str, Member] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)  # link member -> target member
    _n: int = 0
    _layers: dict[str, Layer] = field(default_factory=dict)  # member digest -> uncompressed

    # ------------------------------------------------------------------ reading
    def read(self, source: Readable) -> None:
        reader = _TailReader(_maybe_gunzip(source))
        try:
            tf = tarfile.open(fileobj=reader, mode="r|", bufsize=_CHUNK)  # type: ignore[call-overload]
        except tarfile.TarError as exc:
            raise ImageArchiveError(f"invalid archive: not a tar file ({exc})") from exc
        with tf:
            while True:
                try:
                    m = tf.next()
                except tarfile.TarError as exc:
                    raise ImageArchiveError(f"invalid archive: corrupt header at offset {tf.offset}: {exc}") from exc
                if m is None:
                    break
                self._member(tf, m)
            end = tf.offset
            rest = reader.after(end)
            while True:  # drain the source: only zero blocks may follow the last member
                chunk = reader.read(_CHUNK)
                if not chunk:
                    break
                rest += chunk
                if rest.count(0) != len(rest):
                    break
                rest = b""
            if rest.count(0) != len(rest):
                raise ImageArchiveError(f"invalid archive: corrupt or truncated tar header at offset {end}")

    def _member(self, tf: tarfile.TarFile, m: tarfile.TarInfo) -> None:
        try:
            parts = split_name(m.name)
        except ArchiveError as exc:
            raise ImageArchiveError(f"unsafe archive member {m.name!r}: {exc.args[0] if exc.args else exc}") from exc
        name = "/".join(parts)
        if m.isdir():
            return
        if not name:
            raise ImageArchiveError(f"invalid archive member {m.name!r}: a file for the archive root")
        if name in self.members or name in self.links:
            raise ImageArchiveError(f"invalid archive: duplicate entry {name!r}")
        if m.issym() or m.islnk():
            target = m.linkname
            if m.issym():
                if target.startswith("/"):
                    raise ImageArchiveError(f"unsafe archive member {name!r}: absolute link target {target!r}")
                target = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            else:
                target = posixpath.normpath(target.lstrip("./") if target.startswith("./") else target)
            if target.startswith("../") or target == ".." or target.startswith("/"):
                raise ImageArchiveError(f"unsafe archive member {name!r}: link target {m.linkname!r} "
                                        "is outside the archive")
            self.links[name] = target
            return
        if not m.isreg():
            raise ImageArchiveError(f"invalid archive member {name!r}: unexpected entry type "
                                    f"({_type_name(m)}) in an image archive")
        if m.issparse():
            raise ImageArchiveError(f"invalid archive member {name!r}: sparse files are not supported")
        f = tf.extractfile(m)
        assert f is not None
        h = hashlib.sha256()
        try:
            if m.size <= MEMORY_LIMIT:
                data = f.read()
                if len(data) != m.size:
                    raise ImageArchiveError(f"invalid archive: member {name!r} is truncated")
                h.update(data)
                self.members[name] = Member(name, "sha256:" + h.hexdigest(), m.size, data=data)
                return
            self._n += 1
            path = self.staging / f"m{self._n}"
            done = 0
            short = _short_id(name)
            # Writing (the kernel's page cache) overlaps reading and hashing: one writer thread,
            # a few chunks in flight, in order.
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            pending: collections.deque[concurrent.futures.Future[None]] = collections.deque()
            try:
                with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="ingest") as writer:
                    try:
                        while True:
                            chunk = f.read(_CHUNK)
                            if not chunk:
                                break
                            pending.append(writer.submit(_write_all, fd, chunk))
                            h.update(chunk)
                            done += len(chunk)
                            while len(pending) > 8 or (pending and pending[0].done()):
                                pending.popleft().result()
                            if self.progress is not None:
                                self.progress({"status": "Loading layer", "id": short, "current": done,
                                               "total": m.size})
                    finally:
                        while pending:
                            pending.popleft().result()
            finally:
                os.close(fd)
            if done != m.size:
                raise ImageArchiveError(f"invalid archive: member {name!r} is truncated")
            self.members[name] = Member(name, "sha256:" + h.hexdigest(), m.size, path=path)
        except tarfile.ReadError as exc:
            raise ImageArchiveError(f"invalid archive: truncated or corrupt data in {name!r} ({exc})") from exc

    # ------------------------------------------------------------------ lookups
    def resolve(self, name: str, what: str = "file") -> Member:
        """The member ``name`` names (following links), or a clear error."""
        try:
            key = "/".join(split_name(name))
        except ArchiveError as exc:
            raise ImageArchiveError(f"unsafe path {name!r} in the archive's manifest") from exc
        seen = 0
        while key in self.links:
            key = self.links[key]
            seen += 1
            if seen > 32:
                raise ImageArchiveError(f"too many links resolving {name!r}")
        member = self.members.get(key)
        if member is None:
            raise ImageArchiveError(f"invalid archive: {what} {name!r} named by the manifest is missing "
                                    "from the archive")
        return member

    def has(self, name: str) -> bool:
        try:
            key = "/".join(split_name(name))
        except ArchiveError:
            return False
        return key in self.members or key in self.links

    def json(self, name: str, what: str = "file") -> Any:
        member = self.resolve(name, what)
        if member.size > MAX_JSON:
            raise ImageArchiveError(f"invalid archive: {what} {name!r} is too large ({member.size} bytes)")
        with member.open() as f:
            raw = f.read()
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ImageArchiveError(f"invalid archive: {what} {name!r} is not valid JSON ({exc})") from exc

    def raw(self, member: Member) -> bytes:
        if member.size > MAX_JSON:
            raise ImageArchiveError(f"invalid archive: {member.name!r} is too large ({member.size} bytes)")
        with member.open() as f:
            return f.read()

    def layer(self, member: Member) -> Layer:
        """The uncompressed form of layer ``member`` as a staged file (decompressing if needed)."""
        cached = self._layers.get(member.digest)
        if cached is not None:
            return cached
        comp = member.compression
        if comp == "zstd":
            raise ImageArchiveError(f"layer {member.name!r} is zstd-compressed, which is not supported yet")
        if comp == "" and member.path is not None:
            out = Layer(member.digest, member.size, member.path)
        else:
            self._n += 1
            path = self.staging / f"m{self._n}"
            h = hashlib.sha256()
            size = 0
            with member.open() as src, open(path, "xb") as dst:
                reader: Any = gzip.GzipFile(fileobj=src, mode="rb") if comp == "gzip" else src
                try:
                    while chunk := reader.read(_CHUNK):
                        h.update(chunk)
                        dst.write(chunk)
                        size += len(chunk)
                except (OSError, EOFError, zlib.error) as exc:
                    raise ImageArchiveError(f"layer {member.name!r}: corrupt {comp or 'tar'} data ({exc})") from exc
            out = Layer("sha256:" + h.hexdigest(), size, path)
        self._layers[member.digest] = out
        return out

    def cleanup(self) -> None:
        for p in self.staging.glob("m*"):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


class _Peeked:
    def __init__(self, first: bytes, source: Readable) -> None:
        self._first = first
        self._src = source

    def read(self, n: int = -1) -> bytes:
        if self._first:
            out, self._first = self._first, b""
            return out
        return self._src.read(n)


class _Gunzip:
    """Streaming gzip decompression of a readable (``docker load`` accepts a gzipped tar)."""

    def __init__(self, source: Readable) -> None:
        self._src = source
        self._z = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._eof = False

    def read(self, n: int = -1) -> bytes:
        while not self._eof:
            raw = self._src.read(_CHUNK)
            if not raw:
                self._eof = True
                try:
                    tail = self._z.flush()
                except zlib.error as exc:
                    raise ImageArchiveError(f"invalid archive: corrupt gzip data ({exc})") from exc
                if not self._z.eof:
                    raise ImageArchiveError("invalid archive: truncated gzip stream")
                return tail
            try:
                out = self._z.decompress(raw)
            except zlib.error as exc:
                raise ImageArchiveError(f"invalid archive: corrupt gzip data ({exc})") from exc
            if out:
                return out
        return b""


def _maybe_gunzip(source: Readable) -> Readable:
    first = b""
    while len(first) < 4:
        chunk = source.read(_CHUNK)
        if not chunk:
            break
        first += chunk
    peeked = _Peeked(first, source)
    if first[:2] == GZIP_MAGIC:
        return _Gunzip(peeked)
    if first[:4] == ZSTD_MAGIC:
        raise ImageArchiveError("invalid archive: zstd-compressed archives are not supported yet")
    return peeked


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _type_name(m: tarfile.TarInfo) -> str:
    if m.ischr():
        return "character device"
    if m.isblk():
        return "block device"
    if m.isfifo():
        return "fifo"
    return f"type {m.type!r}"


def _short_id(name: str) -> str:
    for part in name.split("/"):
        stem = part.split(".")[0]
        if len(stem) >= 12 and all(c in "0123456789abcdef" for c in stem):
            return stem[:12]
    return name[:12]


# --------------------------------------------------------------------------- writing
class ChunkWriter:
    """A write-only binary stream that hands ``size``-byte chunks to ``sink``."""

    def __init__(self, sink: Callable[[bytes], None], size: int = _CHUNK) -> None:
        self._sink = sink
        self._buf = bytearray()
        self._size = size
        self.offset = 0

    def write(self, data: bytes) -> int:
        self._buf += data
        self.offset += len(data)
        if len(self._buf) >= self._size:
            self._sink(bytes(self._buf))
            self._buf.clear()
        return len(data)

    def tell(self) -> int:
        return self.offset

    def flush(self) -> None:
        if self._buf:
            self._sink(bytes(self._buf))
            self._buf.clear()

    def close(self) -> None:
        self.flush()


def add_bytes(tf: tarfile.TarFile, name: str, data: bytes, mtime: int = 0, mode: int = 0o644) -> None:
    import io

    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mtime = mtime
    ti.mode = mode
    tf.addfile(ti, io.BytesIO(data))


def add_dir(tf: tarfile.TarFile, name: str, mtime: int = 0) -> None:
    ti = tarfile.TarInfo(name)
    ti.type = tarfile.DIRTYPE
    ti.mode = 0o755
    ti.mtime = mtime
    tf.addfile(ti)


def add_file(tf: tarfile.TarFile, name: str, path: str | os.PathLike[str], mtime: int = 0) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = os.path.getsize(path)
    ti.mtime = mtime
    ti.mode = 0o644
    with open(path, "rb") as f:
        tf.addfile(ti, f)
