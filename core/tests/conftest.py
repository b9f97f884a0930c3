"""Fixtures for the core's tests: throwaway installed distributions on sys.path."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class FakeDist:
    name: str
    root: Path


@pytest.fixture
def make_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeDist]:
    """Install a distribution the way pip leaves it (a ``*.dist-info`` with entry points and a
    module next to it) in a directory put on ``sys.path`` for this test only."""
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    created: list[str] = []

    def make(name: str, entry_points: dict[str, dict[str, str]], modules: dict[str, str],
             version: str = "1.0") -> FakeDist:
        info = site / f"{name.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                                       f"Summary: test distribution {name}\n")
        eps = "".join(f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in items.items()) + "\n"
                      for group, items in entry_points.items())
        (info / "entry_points.txt").write_text(eps)
        for mod, src in modules.items():
            (site / f"{mod}.py").write_text(textwrap.dedent(src))
            created.append(mod)
        return FakeDist(name, site)

    yield make
    for mod in created:
        sys.modules.pop(mod, None)
