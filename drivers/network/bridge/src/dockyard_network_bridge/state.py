"""The bridge driver's own record of what it made (networks, endpoints, published ports), so
``setup()`` can rebuild nft rules and find leaks after a restart. One JSON document, replaced
atomically (temporary file, fsync, rename)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.path.read_text())
        except FileNotFoundError:
            doc = {"version": SCHEMA_VERSION}
        if doc.get("version") != SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: unsupported state version {doc.get('version')!r}")
        doc.setdefault("networks", {})
        doc.setdefault("endpoints", {})
        return doc

    def save(self, doc: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w") as fh:
            json.dump(doc, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
