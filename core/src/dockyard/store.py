"""The state store: the object model in sqlite (WAL), one JSON document per object.

Writes happen in transactions; sqlite's WAL journal makes each commit atomic and durable
against ``kill -9`` (``synchronous=NORMAL`` loses nothing on a process crash, only possibly the
last commits on power loss). Names are unique per kind (a unique index), so a name clash
surfaces as :class:`Conflict` inside the transaction that caused it.

A full filesystem must not stop the daemon from recording what happens (an exit code) or from
freeing space through the API (``rm -f``): a reserve file beside the database (4 MiB of
allocated blocks) is given up when a commit finds no space, and the commit is tried again; the
reserve is made again once there is room. A commit that still cannot be written is a
:class:`StoreFull` naming the filesystem.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol, TypeVar

from dockyard.errors import Conflict, DockyardError, NotFound
from dockyard.model import from_dict, to_dict

SCHEMA_VERSION = 1
#: the space kept beside the database for the commits of a full filesystem
RESERVE = 4 << 20
log = logging.getLogger(__name__)


class StoreFull(DockyardError):
    """A commit could not be written: the state database's filesystem is full."""


def mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding ``path`` (for messages naming it)."""
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _is_full(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", None) == 13 or "disk is full" in str(exc)  # SQLITE_FULL


class Stored(Protocol):
    KIND: Any
    id: Any


T = TypeVar("T")


def _name_of(obj: Any) -> str | None:
    return getattr(obj, "name", None) or None


class Transaction:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        #: the writes made, to make them again when a full filesystem rolled the commit back
        self.ops: list[tuple[str, tuple[Any, ...]]] = []

    def replay(self, ops: list[tuple[str, tuple[Any, ...]]]) -> None:
        for name, args in ops:
            getattr(self, name)(*args)

    def put(self, obj: Any) -> None:
        """Insert or replace ``obj`` (a model dataclass with ``KIND`` and ``id``)."""
        self.ops.append(("put", (obj,)))
        try:
            self._conn.execute(
                "INSERT INTO objects(kind, id, name, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(kind, id) DO UPDATE SET name=excluded.name, data=excluded.data",
                (obj.KIND, obj.id, _name_of(obj), json.dumps(to_dict(obj))),
            )
        except sqlite3.IntegrityError as exc:
            raise Conflict(f"{obj.KIND} name {_name_of(obj)!r} is already in use") from exc

    def delete(self, cls: type, obj_id: str) -> None:
        self.ops.append(("delete", (cls, obj_id)))
        cur = self._conn.execute("DELETE FROM objects WHERE kind=? AND id=?", (cls.KIND, obj_id))  # type: ignore[attr-defined]
        if cur.rowcount == 0:
            raise NotFound(f"no such {cls.KIND}: {obj_id}")  # type: ignore[attr-defined]

    def set_meta(self, key: str, value: str) -> None:
        self.ops.append(("set_meta", (key, value)))
        self._conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))


class Store:
    """Typed access to the objects table. Thread-safe; every call is short."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.reserve_path = path.with_name(path.name + ".reserve")
        self._reserve_checked = 0.0
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
        self._keep_reserve()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """All writes inside commit together or not at all."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            tx = Transaction(self._conn)
            try:
                yield tx
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            self._commit(tx.ops)
        self._keep_reserve()

    def _commit(self, ops: list[tuple[str, tuple[Any, ...]]]) -> None:
        try:
            self._conn.execute("COMMIT")
            return
        except sqlite3.OperationalError as exc:
            if not _is_full(exc):
                raise
            error: sqlite3.Error = exc
        where = mount_point(self.path.parent)
        if self._give_up_reserve():
            log.error("the filesystem at %s is full: the state database used its reserve to record a change; "
                      "free space there", where)
            try:
                if not self._conn.in_transaction:  # sqlite rolled it back: the same writes again
                    self._conn.execute("BEGIN IMMEDIATE")
                    Transaction(self._conn).replay(ops)
                self._conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                error = exc
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        raise StoreFull(f"no space left on device: the filesystem at {where} (holding {self.path}) is full; "
                        f"free space there") from error

    def _give_up_reserve(self) -> bool:
        try:
            self.reserve_path.unlink()
        except FileNotFoundError:
            return False
        self._reserve_checked = time.monotonic()
        return True

    def _keep_reserve(self, every: float = 10.0) -> None:
        """Make the reserve again when it is missing and the filesystem has room for it (and
        more), at most once per ``every`` seconds."""
        now = time.monotonic()
        if now - self._reserve_checked < every:
            return
        self._reserve_checked = now
        try:
            if self.reserve_path.exists():
                return
            st = os.statvfs(self.path.parent)
            if st.f_bavail * st.f_frsize < 4 * RESERVE:
                return
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.posix_fallocate(fd, 0, RESERVE)
            finally:
                os.close(fd)
        except OSError as exc:
            self.reserve_path.unlink(missing_ok=True)
            log.warning("could not keep the state database's reserve at %s: %s", self.reserve_path, exc)

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
