"""The CLI's entry-point records file: its key and a reader that imports nothing heavy.

:meth:`dockyard.registry.Registry.scan_cached` writes ``entry-points.json`` (in
:func:`cache_dir`) with every ``dockyard.*`` entry point it read and the key they were read
under: the interpreter, the import path and the modification time of every
``*.dist-info``/``*.egg-info`` on it, so an install, upgrade or uninstall changes the key. The
registry and the command line's fast path (:mod:`dockyard.cli.fast`) read it through
:func:`read`, which needs only ``os``, ``sys`` and :mod:`dockyard.jsonlite` (the registry module
itself costs about 20 ms of imports on a loaded machine: ``dataclasses``, ``traceback``,
``json``).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing itself costs 3-9 ms of imports (collections, functools, re)
if TYPE_CHECKING:
    from typing import Any

FILE = "entry-points.json"


def cache_dir() -> str:
    """``$XDG_CACHE_HOME/dockyard``, else ``~/.cache/dockyard``."""
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
                        "dockyard")


def installation_key() -> str:
    """What the installed distributions depend on: the interpreter, and each import path entry
    that holds distributions, in order, with the modification time of each one's metadata
    directory (kept as plain text: importing hashlib would cost more than comparing it). Entries
    without any are left out, so ``dockyard`` (the script's directory first on the path) and
    ``python -m dockyard.cli.main`` (the current directory) share one key unless the current
    directory holds a distribution; they used to rewrite the file in turn. About 1 ms with 37
    path entries."""
    parts = [sys.executable, sys.version]
    for entry in sys.path:
        try:
            with os.scandir(entry or ".") as it:
                found = sorted(f"{e.name}@{e.stat().st_mtime_ns}" for e in it
                               if e.name.endswith((".dist-info", ".egg-info")))
        except OSError:  # not a directory (a zip) or gone
            continue
        if found:  # an entry without distributions adds none: the script's directory for
            parts += [entry, *found]  # ``dockyard``, the current one for ``python -m``
    return "\n".join(parts)


def read(directory: str, key: str | None = None) -> list[dict[str, Any]] | None:
    """The records in ``directory``'s file when they were written under ``key`` (by default the
    current :func:`installation_key`); None when the file is missing, unreadable or stale."""
    from dockyard.jsonlite import loads

    try:
        with open(os.path.join(directory, FILE), encoding="utf-8") as fh:
            doc = loads(fh.read())
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != (installation_key() if key is None else key):
        return None
    records = doc.get("records")
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        return None
    return records
