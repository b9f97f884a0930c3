"""Allocation state on disk: one JSON document, changed under an exclusive file lock and
replaced atomically (temporary file, fsync, rename), so a crash leaves the old or the new state
and two driver instances on one data directory never lose each other's updates."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dirfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)

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
