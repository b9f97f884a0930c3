"""The build cache: ``cache key -> image ID``, persisted in ``<data-root>/builder/cache.db``.

A step's key is the SHA-256 of its parent image ID, the instruction after substitution (with its
flags, the build args a RUN sees) and the digests of its inputs (for COPY/ADD the context or
stage files it selected), see :func:`step_key`. The parent image ID is the digest of the
parent's config, which holds every earlier step's effect, so one changed input invalidates its
step and, through the new parent IDs, every step after it. An entry whose image was removed is a
miss (and is dropped).
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

VERSION = "dockyard-builder-cache-v1"


def step_key(parent_id: str, instruction: str, inputs: Iterable[str] = (), platform: str = "") -> str:
    """The cache key of a step: parent image, canonical instruction text, input digests."""
    h = hashlib.sha256()
    h.update(VERSION.encode())
    for part in (parent_id, platform, instruction, *inputs):
        h.update(b"\0")
        h.update(part.encode())
    return "sha256:" + h.hexdigest()


class BuildCache:
    """The index, in sqlite (WAL): concurrent builds and a killed daemon leave it consistent."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("CREATE TABLE IF NOT EXISTS steps (key TEXT PRIMARY KEY, image TEXT NOT NULL, "
                         "created REAL NOT NULL)")
            yield conn
        finally:
            conn.close()

    def lookup(self, key: str) -> str | None:
        """The image ID recorded for ``key`` (it may have been removed since)."""
        with self._db() as db:
            row = db.execute("SELECT image FROM steps WHERE key = ?", (key,)).fetchone()
            return None if row is None else str(row[0])

    def forget(self, key: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM steps WHERE key = ?", (key,))

    def get(self, key: str, exists: Callable[[str], bool]) -> str | None:
        """:meth:`lookup`, dropping the entry when ``exists`` says its image is gone."""
        image_id = self.lookup(key)
        if image_id is not None and not exists(image_id):
            self.forget(key)
            return None
        return image_id

    def put(self, key: str, image_id: str) -> None:
        with self._db() as db:
            db.execute("INSERT OR REPLACE INTO steps (key, image, created) VALUES (?, ?, ?)",
                       (key, image_id, time.time()))

    def prune(self, exists: Callable[[str], bool]) -> int:
        with self._db() as db:
            gone = [k for k, img in db.execute("SELECT key, image FROM steps").fetchall() if not exists(img)]
            db.executemany("DELETE FROM steps WHERE key = ?", [(k,) for k in gone])
            return len(gone)

    def __len__(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT COUNT(*) FROM steps").fetchone()[0])
