"""A content-addressed blob store: blobs named by their sha256 digest under one directory.

Layout::

    <root>/blobs/sha256/<hex>   visible, verified blobs (read-only files)
    <root>/ingest/<random>      writes in progress (swept by :meth:`ContentStore.sweep`)

A blob becomes visible only after its bytes were hashed, compared with the expected digest,
fsync'ed and renamed into place (then the directory is fsync'ed): a crash or a wrong digest
leaves nothing half-visible. Everything here blocks; services call it via ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dockyard.errors import InvalidArgument, NotFound

_DIGEST_RE = re.compile(r"^sha256:[a-f0-9]{64}$")
_CHUNK = 1 << 20


class InvalidDigest(InvalidArgument):
    """A string that is not a ``sha256:<64 lowercase hex>`` digest."""


class DigestMismatch(InvalidArgument):
    """The bytes written do not match the digest (or size) they were announced with."""

    def __init__(self, expected: str, actual: str, detail: str = "") -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(detail or f"content digest mismatch: expected {expected}, got {actual}")


def validate_digest(digest: str) -> str:
    """Return ``digest`` if it is a well-formed sha256 digest, else raise :class:`InvalidDigest`."""
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise InvalidDigest(f"invalid digest {digest!r}: expected sha256:<64 lowercase hex digits>")
    return digest


def digest_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@dataclass
class ContentStore:
    """Blobs by digest under ``root`` (created on first use)."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def _blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    @property
    def _ingest(self) -> Path:
        return self.root / "ingest"

    def path(self, digest: str) -> Path:
        """Where blob ``digest`` lives (whether or not it exists)."""
        return self._blobs / validate_digest(digest).split(":", 1)[1]

    # ------------------------------------------------------------------ writing
    def put(self, source: bytes | BinaryIO | str | os.PathLike[str], expected_digest: str | None = None,
            expected_size: int | None = None) -> str:
        """Store ``source`` (bytes, a readable binary stream or a file path); return its digest.

        With ``expected_digest`` (and/or ``expected_size``) the blob becomes visible only if it
        matches; otherwise :class:`DigestMismatch` is raised and nothing is left behind.
        Storing an existing blob again is a cheap no-op once verified.
        """
        if expected_digest is not None:
            validate_digest(expected_digest)
        self._blobs.mkdir(parents=True, exist_ok=True)
        self._ingest.mkdir(parents=True, exist_ok=True)
        tmp = self._ingest / f"{secrets.token_hex(8)}.partial"
        h = hashlib.sha256()
        size = 0
        try:
            with open(tmp, "xb") as out:
                for chunk in _chunks(source):
                    h.update(chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                actual = "sha256:" + h.hexdigest()
                if expected_digest is not None and actual != expected_digest:
                    raise DigestMismatch(expected_digest, actual)
                if expected_size is not None and size != expected_size:
                    raise DigestMismatch(expected_digest or actual, actual,
                                         f"content size mismatch: expected {expected_size} bytes, got {size}")
                os.fsync(out.fileno())
            os.chmod(tmp, 0o444)
            final = self.path(actual)
            os.rename(tmp, final)
            _fsync_dir(final.parent)
            return actual
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def sweep(self) -> int:
        """Remove writes left in progress by a crash; returns how many were removed."""
        if not self._ingest.is_dir():
            return 0
        n = 0
        for entry in self._ingest.iterdir():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                n += 1
        return n

    # ------------------------------------------------------------------ reading
    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def open(self, digest: str) -> BinaryIO:
        """A binary file object on blob ``digest`` (NotFound if absent)."""
        try:
            return open(self.path(digest), "rb")
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def get(self, digest: str) -> bytes:
        with self.open(digest) as f:
            return f.read()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def delete(self, digest: str) -> None:
        """Remove blob ``digest`` (NotFound if absent)."""
        try:
            os.unlink(self.path(digest))
        except FileNotFoundError:
            raise NotFound(f"blob {digest} not found") from None

    def list(self) -> list[str]:
        """Every visible digest, sorted."""
        if not self._blobs.is_dir():
            return []
        return sorted("sha256:" + p.name for p in self._blobs.iterdir()
                      if _DIGEST_RE.fullmatch("sha256:" + p.name))

    def verify(self, digest: str) -> bool:
        """Re-hash blob ``digest`` and say whether it still matches its name."""
        h = hashlib.sha256()
        with self.open(digest) as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        return "sha256:" + h.hexdigest() == digest


def _chunks(source: bytes | BinaryIO | str | os.PathLike[str]) -> Iterator[bytes]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        yield bytes(source)
        return
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            while chunk := f.read(_CHUNK):
                yield chunk
        return
    while chunk := source.read(_CHUNK):
        yield chunk


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
