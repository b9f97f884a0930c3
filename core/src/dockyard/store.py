"""The state store: the object model in sqlite (WAL), one JSON document per object.

Writes happen in transactions; sqlite's WAL journal makes each commit atomic and durable
against ``kill -9`` (``synchronous=NORMAL`` loses nothing on a process crash, only possibly the
last commits on power loss). Names are unique per kind (a unique index), so a name clash
surfaces as :class:`Conflict` inside the transaction that caused it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from dockyard.errors import Conflict, NotFound
from dockyard.model import from_dict, to_dict

SCHEMA_VERSION = 1


class Stored(Protocol):
    KIND: Any
    id: Any


T = TypeVar("T")


def _name_of(obj: Any) -> str | None:
    return getattr(obj, "name", None) or None


class Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def put(self, obj: Any) -> None:
        """Insert or replace ``obj`` (a model dataclass with ``KIND`` and ``id``)."""
        try:
            self._conn.execute(
                "INSERT INTO objects(kind, id, name, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(kind, id) DO UPDATE SET name=excluded.name, data=excluded.data",
                (obj.KIND, obj.id, _name_of(obj), json.dumps(to_dict(obj))),
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"{obj.KIND} name {_name_of(obj)!r} is already in use") from exc

    def delete(self, cls: type, obj_id: str) -> None:
        cur = self._conn.execute("DELETE FROM objects WHERE kind=? AND id=?", (cls.KIND, obj_id))  # type: ignore[attr-defined]
        if cur.rowcount == 0:
            raise NotFound(f"no such {cls.KIND}: {obj_id}")  # type: ignore[attr-defined]

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))


class Store:
    """Typed access to the objects table. Thread-safe; every call is short."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(
            """
            CREATE TABLE IF NOT EXISTS objects(
                kind TEXT NOT NULL, id TEXT NOT NULL, name TEXT, data TEXT NOT NULL,
                PRIMARY KEY(kind, id));
            CREATE UNIQUE INDEX IF NOT EXISTS objects_name ON objects(kind, name)
                WHERE name IS NOT NULL;
            CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
            """
        )
        with self.transaction() as tx:
            if self.meta("schema") is None:
                tx.set_meta("schema", str(SCHEMA_VERSION))

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All writes inside commit together or not at all."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Transaction(self._conn)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def get(self, cls: type[T], obj_id: str) -> T:
        with self._lock:
            row = self._conn.execute("SELECT data FROM objects WHERE kind=? AND id=?",
                                     (cls.KIND, obj_id)).fetchone()  # type: ignore[attr-defined]
        if row is None:
            raise NotFound(f"no such {cls.KIND}: {obj_id}")  # type: ignore[attr-defined]
        return from_dict(cls, json.loads(row[0]))

    def by_name(self, cls: type[T], name: str) -> T | None:
        with self._lock:
            row = self._conn.execute("SELECT data FROM objects WHERE kind=? AND name=?",
                                     (cls.KIND, name)).fetchone()  # type: ignore[attr-defined]
        return from_dict(cls, json.loads(row[0])) if row else None

    def by_prefix(self, cls: type[T], prefix: str) -> list[T]:
        """Objects whose ID starts with ``prefix`` (for short-ID lookups)."""
        esc = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self._lock:
            rows = self._conn.execute(
                "SELECT data FROM objects WHERE kind=? AND id LIKE ? ESCAPE '\\'",
                (cls.KIND, esc + "%")).fetchall()  # type: ignore[attr-defined]
        return [from_dict(cls, json.loads(r[0])) for r in rows]

    def list(self, cls: type[T]) -> list[T]:
        with self._lock:
            rows = self._conn.execute("SELECT data FROM objects WHERE kind=? ORDER BY rowid",
                                      (cls.KIND,)).fetchall()  # type: ignore[attr-defined]
        return [from_dict(cls, json.loads(r[0])) for r in rows]

    def count(self, cls: type) -> int:
        with self._lock:
            (n,) = self._conn.execute("SELECT count(*) FROM objects WHERE kind=?",
                                      (cls.KIND,)).fetchone()  # type: ignore[attr-defined]
        return int(n)
