"""Shared fixtures: a Windows layer chain on disk, as the storage path makes it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard_arch_windows.layers import scratch_layer


def _layer_chain(base: Path, n: int) -> list[str]:
    dirs = []
    for i in range(n):
        d = base / f"layer{i}"
        (d / "Files").mkdir(parents=True)
        dirs.append(str(d))
    (Path(dirs[0]) / "UtilityVM" / "Files").mkdir(parents=True)
    return list(reversed(dirs))


@pytest.fixture
def make_scratch(tmp_path: Path) -> Callable[..., Path]:
    """``make_scratch(n=2)``: a scratch layer over ``n`` layer directories (base last, with a
    UtilityVM), the rootfs a Windows container gets."""
    def make(n: int = 2, name: str = "scratch") -> Path:
        return scratch_layer(tmp_path / name, _layer_chain(tmp_path / f"{name}-layers", n))

    return make
