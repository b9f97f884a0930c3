"""Allocation state on disk: one JSON document, changed under an exclusive file lock and
replaced atomically (:mod:`dockyard.jsonfile`), so a crash leaves the old or the new state and two
driver instances on one data directory never lose each other's updates.

It is not fsynced, like the daemon's own store: a power failure may lose the latest changes,
and the daemon's recovery tolerates releasing an address the allocator no longer lists."""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dockyard.jsonfile import write_json

SCHEMA_VERSION = 1


class AllocationStore:
    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / "ipam.json"
        self.lock_path = Path(data_dir) / "ipam.lock"

    def _read(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"version": SCHEMA_VERSION, "pools": {}}
        if doc.get("version") != SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: unsupported IPAM state version {doc.get('version')!r}")
        return doc

    def _write(self, doc: dict[str, Any]) -> None:
        write_json(self.path, doc)

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """Yield the state; it is written back if the block finishes without an exception."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            try:
                doc = self._read()
                before = json.dumps(doc, sort_keys=True)
                yield doc
                if json.dumps(doc, sort_keys=True) != before:
                    self._write(doc)
            finally:
                fcntl.flock(lock.fileno(), fcntl.LOCK_UN)

    def snapshot(self) -> dict[str, Any]:
        with self.transaction() as doc:
            return json.loads(json.dumps(doc))
