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

import json
import os
from pathlib import Path
from typing import Any


def write_json(path: Path, doc: Any, *, durable: bool = False) -> None:
    """Replace ``path`` with ``doc`` as indented, key-sorted JSON (parents are created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
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

