"""CRIU's kernel cache (``/run/criu.kdat``) where /run is no tmpfs: made once per boot through a
private tmpfs /run, so CRIU does not probe the kernel on each run while a container is frozen."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dockyard_arch_linux import checkpoint as ck


def test_a_cache_from_an_earlier_boot_is_stale(tmp_path: Path) -> None:
    kdat = tmp_path / "criu.kdat"
    assert not ck.kdat_fresh(kdat)
    kdat.write_bytes(b"x")
    assert ck.kdat_fresh(kdat)
    before_boot = ck.boot_time() - 60
    os.utime(kdat, (before_boot, before_boot))
    assert not ck.kdat_fresh(kdat)


def test_the_cache_criu_writes_on_a_tmpfs_is_copied_out(tmp_path: Path) -> None:
    if os.geteuid() != 0 or not shutil.which("unshare") or not os.access(ck.DEFAULT_CRIU, os.X_OK):
        pytest.skip("needs root, unshare(1) and CRIU 4.x at /opt/criu")
    kdat = tmp_path / "criu.kdat"
    assert ck.make_kdat(ck.DEFAULT_CRIU, kdat) == ""
    assert ck.kdat_fresh(kdat) and kdat.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["criu.kdat"]  # no temporary file left
