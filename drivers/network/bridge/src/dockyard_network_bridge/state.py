"""The bridge driver's own record of what it made (networks, endpoints, published ports), so
``setup()`` can rebuild nft rules and find leaks after a restart. One JSON document, replaced
atomically, not fsynced (:mod:`dockyard.jsonfile`): after a power failure the bridges and veths
it describes are gone too, and ``setup()`` drops endpoints whose veth is missing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dockyard.jsonfile import write_json

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
        write_json(self.path, doc)
