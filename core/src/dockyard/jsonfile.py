"""Small JSON state files replaced atomically, for drivers that keep a document of their own.

The write goes to a temporary file in the same directory and is renamed over the old one, so a
reader (or a daemon killed at any moment) sees the old or the new document, never half of one.

``durable=True`` also fsyncs the file and its directory before returning, so the new document
survives a power failure. Without it the guarantee matches the daemon's store (sqlite WAL with
``synchronous=NORMAL``): safe against a crash of the process, while a power failure may lose the
latest writes. State that the driver rebuilds from the kernel and the daemon's store after a
reboot (bridge endpoints, address allocations of containers that no longer exist) does not need
the fsyncs, which cost a millisecond or more each on the path of every container start.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
from pathlib import Path
from typing import Any, Generic, TypeVar

R = TypeVar("R")


def write_json(path: Path, doc: Any, *, durable: bool = False) -> None:
    """Replace ``path`` with ``doc`` as indented, key-sorted JSON (parents are created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # one temporary name per thread: writers of the same file in two threads (asyncio.to_thread)
    # must not share one, or the first rename takes the other's half-written file away
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=1, sort_keys=True)
        if durable:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, path)
    if durable:
        dirfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dirfd)
        finally:
            os.close(dirfd)



class RecordDir(Generic[R]):
    """A driver's records, one JSON document per ID in ``directory`` (``<id>.json``), each a
    dataclass ``cls`` written with :func:`write_json`: what the provision drivers keep per host.

    ``load`` returns None for a missing record (and, with ``lenient``, for one that does not
    read back as ``cls``); ``all`` skips records that vanish or do not read back.
    """

    def __init__(self, directory: Path, cls: type[R], *, lenient: bool = False) -> None:
        self.directory = directory
        self.cls = cls
        self.lenient = lenient

    def path(self, record_id: str) -> Path:
        return self.directory / f"{record_id}.json"

    def _read(self, path: Path) -> R:
        return self.cls(**json.loads(path.read_text()))

    def load(self, record_id: str) -> R | None:
        try:
            return self._read(self.path(record_id))
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, TypeError):
            if self.lenient:
                return None
            raise

    def save(self, record: R) -> None:
        write_json(self.path(record.id), dataclasses.asdict(record))  # type: ignore[attr-defined, call-overload]

    def remove(self, record_id: str) -> None:
        self.path(record_id).unlink(missing_ok=True)

    def all(self) -> list[R]:
        try:
            paths = sorted(p for p in self.directory.iterdir() if p.suffix == ".json")
        except FileNotFoundError:
            return []
        out = []
        for p in paths:
            try:
                out.append(self._read(p))
            except (FileNotFoundError, json.JSONDecodeError, TypeError):
                continue
        return out

    def count(self) -> int:
        try:
            return sum(1 for p in self.directory.iterdir() if p.suffix == ".json")
        except FileNotFoundError:
            return 0
