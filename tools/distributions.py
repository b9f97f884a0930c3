#!/usr/bin/env python3
"""List the project's distributions (directories with a pyproject.toml), dependency order.

Used by the Makefile (editable installs), tox (generated envs) and the meta-tests, so the
list of distributions lives in the tree itself, not in hand-kept files.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATTERNS = ("core", "plugin-sdk", "plugins/*", "drivers/*/*")


def distributions() -> list[Path]:
    found: list[Path] = []
    for pattern in PATTERNS:
        found.extend(sorted(p.parent for p in ROOT.glob(f"{pattern}/pyproject.toml")))
    return found


if __name__ == "__main__":
    rel = "--relative" in sys.argv
    for d in distributions():
        print(d.relative_to(ROOT) if rel else d)
