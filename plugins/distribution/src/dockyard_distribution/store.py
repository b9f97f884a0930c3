"""Where pulled images go and pushed images come from: the core image service.

The image service keeps configs, manifests and *uncompressed* layer tars in its content store
and layers in the storage driver keyed by chain ID. A pull hands it verified, decompressed
layers (a ``Plan``); a push needs compressed blobs, which we make once per layer (gzip) and
remember, with the registry repositories each compressed digest is known to live in (docker's
"v2 metadata"), so a later push can skip, mount or reuse instead of compressing again.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hashlib
import json
import os
import secrets
import shutil
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dockyard.content import DigestMismatch
from dockyard.errors import InvalidArgument, NotFound, ServiceNotInstalled

_CHUNK = 1 << 20


@dataclass
class CompressedBlob:
    digest: str
    size: int
    media_type: str
    path: Path | None  # None: not kept locally (only known to exist in ``repos``)


class Metadata:
    """diff ID -> compressed blobs we know of, and the repositories holding each (JSON file)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text() or "{}")
        except FileNotFoundError:
            return {}
        except ValueError:
            return {}

    def record(self, diff_id: str, digest: str, size: int, media_type: str, repo: str = "") -> None:
        with self._lock:
            data = self._load()
            entries = data.setdefault(diff_id, {})
            e = entries.setdefault(digest, {"size": size, "mediaType": media_type, "repos": []})
            if repo and repo not in e["repos"]:
                e["repos"].append(repo)
                e["repos"] = e["repos"][-16:]
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{secrets.token_hex(4)}.tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.path)

    def blobs(self, diff_id: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._load().get(diff_id) or {})


class ImageStore:
    """The distribution plugin's view of ``kernel.images``."""

    def __init__(self, kernel: Any) -> None:
        self.kernel = kernel
        self.root = kernel.config.data_root / "distribution"
        self.metadata = Metadata(self.root / "v2metadata.json")

    @property
    def images(self) -> Any:
        if not self.kernel.has_service("images"):
            raise ServiceNotInstalled("images", self.kernel.role, "dockyard-engine")
        return self.kernel.images

    @property
    def staging_root(self) -> Path:
        # Same file system as the content store, so staged layers are renamed into it.
        return self.kernel.config.data_root / "images" / "staging"

    @contextlib.contextmanager
    def staging(self) -> Iterator[Path]:
        root = self.staging_root
        root.mkdir(parents=True, exist_ok=True)
        path = root / f"pull-{secrets.token_hex(8)}"
        path.mkdir(mode=0o700)
        try:
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    async def has_layer(self, chain_id: str) -> bool:
        return await self.images.has_layer(chain_id)

    def find(self, name: str) -> Any | None:
        try:
            return self.images.resolve(name)
        except NotFound:
            return None

    async def install(self, config_raw: bytes, layers: list[tuple[str, int, Path]], manifest_raw: bytes,
                      tag: str | None, repo_digest: str, progress: Callable[[dict[str, Any]], None] | None
                      ) -> tuple[Any, bool]:
        """Install a pulled image (all or nothing); returns ``(image, changed)``.

        ``layers`` are ``(diff_id, size, uncompressed path)``; a layer the driver already holds
        may point at a missing path. ``changed`` is False when the image existed and the tag
        already named it ("Image is up to date").
        """
        from dockyard.services.images import Layer, Plan

        svc = self.images
        plan = Plan(config_raw=config_raw, layers=[Layer(d, s, p) for d, s, p in layers],
                    tags=[tag] if tag else [], manifest_raw=manifest_raw)
        (inst,) = await svc.install([plan], "pull", progress)
        image = inst.image
        changed = bool(inst.new or inst.tagged or inst.moved)
        if repo_digest and repo_digest not in image.repo_digests:
            image.repo_digests = [d for d in image.repo_digests if d.split("@")[0] != repo_digest.split("@")[0]]
            image.repo_digests.append(repo_digest)
            svc.store_put(image)
            changed = changed or inst.new
        return image, changed

    def emit(self, action: str, image: Any, name: str) -> None:
        attrs = dict(getattr(image.config, "labels", {}) or {})
        attrs["name"] = name
        self.kernel.emit("image", action, image.id, **attrs)

    # ------------------------------------------------------------------ push side
    def config_raw(self, image: Any) -> bytes:
        return self.images.content.get(image.id)

    def layer_path(self, diff_id: str) -> Path:
        path = self.images.content.path(diff_id)
        if not path.exists():
            raise NotFound(f"layer {diff_id} is missing from the content store")
        return path

    def compressed_path(self, diff_id: str) -> Path:
        return self.root / "compressed" / diff_id.split(":", 1)[1]

    def compressed(self, diff_id: str) -> CompressedBlob | None:
        """A gzip blob of ``diff_id`` we made before (its digest re-checked by size)."""
        path = self.compressed_path(diff_id)
        for digest, e in self.metadata.blobs(diff_id).items():
            if e.get("local") and path.exists() and path.stat().st_size == e.get("size"):
                return CompressedBlob(digest, int(e["size"]), str(e.get("mediaType")), path)
        return None

    def gzip_stream(self, diff_id: str, progress: Callable[[int], None] | None = None) -> GzipStream:
        """Compress the layer while it is uploaded (see :class:`GzipStream`)."""
        return GzipStream(self, diff_id, progress)

    def layer_size(self, diff_id: str) -> int:
        return self.layer_path(diff_id).stat().st_size

    def _record_local(self, diff_id: str, digest: str, size: int, media_type: str) -> None:
        with self.metadata._lock:
            data = self.metadata._load()
            for d, e in list((data.get(diff_id) or {}).items()):
                if e.get("local") and d != digest:
                    e["local"] = False
            e = data.setdefault(diff_id, {}).setdefault(digest, {"size": size, "mediaType": media_type,
                                                                  "repos": []})
            e["local"] = True
            self.metadata.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.metadata.path.with_suffix(f".{secrets.token_hex(4)}.tmp")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.metadata.path)


#: gzip members of this many input bytes are compressed in parallel (pigz-like, multi-member).
GZIP_BLOCK = 1 << 20
_SAMPLE = 32 << 10


def _gzip_member(block: bytes) -> bytes:
    """One gzip member for ``block``: deflate level 1, or stored when a sample shows the data
    does not compress (already-compressed or random content costs a copy, not a slow deflate)."""
    sample = block[:_SAMPLE]
    level = 1
    if len(sample) == _SAMPLE and len(zlib.compress(sample, 1)) > 0.95 * len(sample):
        level = 0
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    return c.compress(block) + c.flush()


class GzipStream:
    """The gzip blob of a layer as an async iterator of gzip members, compressed by a thread
    pool while the consumer (an upload) sends them; the blob is also kept in the compressed
    cache. The input is checked against ``diff_id`` before the last member is handed out, so a
    corrupt layer never completes an upload. ``result`` is set once the iteration finished."""

    def __init__(self, store: ImageStore, diff_id: str, progress: Callable[[int], None] | None) -> None:
        self.store = store
        self.diff_id = diff_id
        self.progress = progress
        self.result: CompressedBlob | None = None
        self._used = False

    def __aiter__(self) -> Any:
        if self._used:
            raise InvalidArgument("a compressed layer stream can be sent only once")
        self._used = True
        return self._members()

    async def _members(self) -> Any:
        from dockyard_distribution.mediatypes import DOCKER_LAYER

        loop = asyncio.get_running_loop()
        src = self.store.layer_path(self.diff_id)
        dest = self.store.compressed_path(self.diff_id)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_suffix(f".{secrets.token_hex(4)}.partial")
        h_in, h_out = hashlib.sha256(), hashlib.sha256()
        size = done = 0
        n = max(1, os.cpu_count() or 1)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=n, thread_name_prefix="gzip")
        pending: collections.deque[tuple[int, asyncio.Future[bytes]]] = collections.deque()
        f = open(src, "rb")  # noqa: SIM115 - closed below
        cache = open(tmp, "wb")  # noqa: SIM115 - closed below

        def read() -> bytes:
            block = f.read(GZIP_BLOCK)
            h_in.update(block)
            return block

        async def take() -> bytes:
            nonlocal size, done
            length, fut = pending.popleft()
            data = await fut
            h_out.update(data)
            await loop.run_in_executor(pool, cache.write, data)
            size += len(data)
            done += length
            if self.progress:
                self.progress(done)
            return data

        try:
            first = True
            while True:
                block = await loop.run_in_executor(pool, read)
                if not block and not first:
                    break
                first = False
                pending.append((len(block), loop.run_in_executor(pool, _gzip_member, block)))
                if not block:
                    break
                while len(pending) > 2 * n:
                    yield await take()
            while len(pending) > 1:
                yield await take()
            last = await take()
            got = "sha256:" + h_in.hexdigest()
            if got != self.diff_id:
                raise DigestMismatch(self.diff_id, got, f"layer {self.diff_id} in the content store is corrupt")
            cache.close()
            os.replace(tmp, dest)
            digest = "sha256:" + h_out.hexdigest()
            self.store._record_local(self.diff_id, digest, size, DOCKER_LAYER)
            self.result = CompressedBlob(digest, size, DOCKER_LAYER, dest)
            yield last
        finally:
            for _length, fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            f.close()
            cache.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class Unpacker:
    """A download sink writing the *uncompressed* layer tar to ``dest`` while the bytes arrive,
    hashing it (the diff ID). Compression is sniffed from the first bytes (gzip, possibly
    multi-member, or none), as dockerd does; zstd is refused. Blocking: runs in worker threads."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self._f: BinaryIO | None = None
        self._open()

    def _open(self) -> None:
        self._f = open(self.dest, "wb")  # noqa: SIM115 - closed by close()/finish()
        self._h = hashlib.sha256()
        self.size = 0
        self._dec: Any = None
        self._mode = ""  # "" until the first bytes: "gzip" | "none"
        self._head = b""
        self._in_member = False

    def write(self, chunk: bytes) -> None:
        if not self._mode:
            self._head += chunk
            if len(self._head) < 4:
                return
            chunk, self._head = self._head, b""
            if chunk.startswith(ZSTD_MAGIC):
                raise InvalidArgument("zstd-compressed layers are not supported yet")
            self._mode = "gzip" if chunk.startswith(GZIP_MAGIC) else "none"
            self._dec = zlib.decompressobj(16 + zlib.MAX_WBITS) if self._mode == "gzip" else None
        if self._dec is None:
            self._out(chunk)
            return
        buf = chunk
        while buf:  # several gzip members may start and end in one chunk
            try:
                data = self._dec.decompress(buf)
            except zlib.error as exc:
                raise InvalidArgument(f"corrupt gzip layer: {exc}") from exc
            self._in_member = True
            self._out(data)
            if self._dec.eof:
                buf = self._dec.unused_data
                self._dec = zlib.decompressobj(16 + zlib.MAX_WBITS)
                self._in_member = False
            else:
                buf = b""

    def _out(self, data: bytes) -> None:
        if data:
            self._h.update(data)
            assert self._f is not None
            self._f.write(data)
            self.size += len(data)

    def reset(self) -> None:
        self.close()
        self._open()

    def finish(self) -> tuple[str, int]:
        """``(diff_id, size)`` of the complete layer; InvalidArgument when truncated."""
        if not self._mode and self._head:  # a layer shorter than 4 bytes: not gzip
            head, self._head, self._mode = self._head, b"", "none"
            self._out(head)
        if self._in_member:
            raise InvalidArgument("truncated gzip layer")
        self.close()
        return "sha256:" + self._h.hexdigest(), self.size

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None
