"""dockyard.content: verified, atomic, content-addressed blobs."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import pytest

from dockyard.content import ContentStore, DigestMismatch, InvalidDigest, digest_bytes
from dockyard.errors import InvalidArgument, NotFound


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> ContentStore:
    return ContentStore(tmp_path / "content")


def test_put_bytes_stream_path(store: ContentStore, tmp_path: Path) -> None:
    a = store.put(b"alpha")
    assert a == sha(b"alpha") == digest_bytes(b"alpha")
    big = os.urandom(3 * (1 << 20) + 17)
    b = store.put(io.BytesIO(big), expected_digest=sha(big), expected_size=len(big))
    src = tmp_path / "file"
    src.write_bytes(b"from a path")
    c = store.put(src)
    assert store.get(a) == b"alpha" and store.get(b) == big and store.get(c) == b"from a path"
    assert store.size(b) == len(big)
    assert store.list() == sorted([a, b, c])
    assert all(store.exists(d) for d in (a, b, c))
    with store.open(a) as f:
        assert f.read() == b"alpha"
    assert store.verify(b)
    assert store.put(b"alpha", expected_digest=a) == a  # idempotent
    assert list((store.root / "ingest").iterdir()) == []


def test_wrong_digest_leaves_nothing(store: ContentStore) -> None:
    wrong = sha(b"something else")
    with pytest.raises(DigestMismatch) as info:
        store.put(io.BytesIO(b"payload"), expected_digest=wrong)
    assert isinstance(info.value, InvalidArgument)
    assert info.value.expected == wrong and info.value.actual == sha(b"payload")
    assert not store.exists(wrong) and not store.exists(sha(b"payload"))
    assert store.list() == []
    assert list((store.root / "ingest").iterdir()) == []


def test_wrong_size_leaves_nothing(store: ContentStore) -> None:
    with pytest.raises(DigestMismatch, match="size"):
        store.put(b"payload", expected_size=3)
    assert store.list() == []


def test_failing_stream_leaves_nothing(store: ContentStore) -> None:
    class Broken(io.RawIOBase):
        calls = 0

        def read(self, n: int = -1) -> bytes:
            self.calls += 1
            if self.calls > 2:
                raise OSError("connection reset")
            return b"x" * 100

    with pytest.raises(OSError, match="connection reset"):
        store.put(Broken())
    assert store.list() == [] and list((store.root / "ingest").iterdir()) == []


def test_missing_and_delete(store: ContentStore) -> None:
    d = store.put(b"x")
    store.delete(d)
    assert not store.exists(d)
    for op in (store.delete, store.get, store.size, store.open):
        with pytest.raises(NotFound):
            op(d)


def test_invalid_digests(store: ContentStore) -> None:
    for bad in ("sha256:xyz", "md5:" + "a" * 32, "sha256:" + "A" * 64, "../../etc/passwd", "sha256:" + "a" * 63, "sha256:" + "a" * 64 + "\n"):
        with pytest.raises(InvalidDigest):
            store.exists(bad)
    with pytest.raises(InvalidDigest):
        store.put(b"x", expected_digest="sha256:short")


def test_sweep_and_list_ignore_partials(store: ContentStore) -> None:
    d = store.put(b"x")
    (store.root / "ingest" / "dead.partial").write_bytes(b"half")
    (store.root / "blobs" / "sha256" / "not-a-digest").write_bytes(b"junk")
    assert store.list() == [d]
    assert store.sweep() == 1
    assert list((store.root / "ingest").iterdir()) == []


def test_blob_is_read_only(store: ContentStore) -> None:
    d = store.put(b"x")
    assert os.stat(store.path(d)).st_mode & 0o777 == 0o444
