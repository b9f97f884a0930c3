"""Fixtures for the core's tests: throwaway installed distributions on sys.path, and fake drivers
installed that way (the core's tests never need a real driver: each is its own distribution)."""

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


FAKE_LAYER_DRIVERS = """
from dockyard.specs import DriverInfo, LayerDriver


class Fake(LayerDriver):  # stores nothing: enough for the kernel to select, set up and close
    async def setup(self):
        self.context.data_dir.mkdir(parents=True, exist_ok=True)

    async def apply(self, key, parent, tar_path): raise NotImplementedError
    async def prepare(self, key, parent): raise NotImplementedError
    async def mount(self, key): raise NotImplementedError
    async def unmount(self, key): pass
    async def diff(self, key, out_path): raise NotImplementedError
    async def remove(self, key): pass
    async def exists(self, key): return False
    async def list(self): return []


class Fast(Fake):
    info = DriverInfo("fake-fast", "storage")


class Slow(Fake):
    info = DriverInfo("fake-slow", "storage")
"""


@pytest.fixture
def fake_layer_drivers(make_dist: Callable[..., FakeDist]) -> tuple[str, str]:
    """Two layer drivers, ``fake-fast`` and ``fake-slow``, installed by one throwaway
    distribution (``acme-fake-layers``); returns their names."""
    make_dist("acme-fake-layers", {"dockyard.drivers.storage": {"fake-fast": "acme_fake_layers:Fast",
                                                                "fake-slow": "acme_fake_layers:Slow"}},
              {"acme_fake_layers": FAKE_LAYER_DRIVERS})
    return "fake-fast", "fake-slow"
