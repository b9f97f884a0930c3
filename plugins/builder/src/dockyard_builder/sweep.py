"""Start-up clean-up of what an interrupted build left: context directories under
``<data-root>/builder/tmp`` and read-write layers keyed ``build-...`` in the storage driver.

Layer keys and working directories carry a token of the daemon process that made them
(:data:`RUN_TOKEN`), so the sweep never touches those of a build that already started in this
process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import shutil
from pathlib import Path
from typing import Any

from dockyard.errors import DockyardError

log = logging.getLogger(__name__)

#: This daemon process's token in build layer keys (``build-<token>-<random>``).
RUN_TOKEN = secrets.token_hex(4)
PREFIX = "build-"


def layer_key(kind: str = "") -> str:
    """A fresh read-write layer key for a build step (never ``sha256:``: not an image layer)."""
    return f"{PREFIX}{RUN_TOKEN}-{kind + '-' if kind else ''}{secrets.token_hex(8)}"


def work_dir_name() -> str:
    """A fresh name for a build's working directory under ``<data-root>/builder/tmp``."""
    return f"{RUN_TOKEN}-{secrets.token_hex(8)}"


def _sweep_dirs(tmp: Path) -> None:
    try:
        entries = list(tmp.iterdir())
    except FileNotFoundError:
        return
    for entry in entries:
        if not entry.name.startswith(f"{RUN_TOKEN}-"):
            shutil.rmtree(entry, ignore_errors=True)


def stale(key: str) -> bool:
    return key.startswith(PREFIX) and not key.startswith(f"{PREFIX}{RUN_TOKEN}-")


async def sweep(kernel: Any) -> None:
    tmp = Path(kernel.config.data_root) / "builder" / "tmp"
    await asyncio.to_thread(_sweep_dirs, tmp)
    try:
        drv = await kernel.driver_ready("storage")
        keys = await drv.list()
    except DockyardError as exc:
        log.warning("builder: cannot list storage layers to sweep: %s", exc)
        return
    for key in keys:
        if not stale(key):
            continue
        with contextlib.suppress(DockyardError, OSError):
            await drv.unmount(key)
        try:
            await drv.remove(key)
            log.info("builder: removed layer %s left by an interrupted build", key)
        except (DockyardError, OSError) as exc:
            log.warning("builder: cannot remove leftover layer %s: %s", key, exc)
