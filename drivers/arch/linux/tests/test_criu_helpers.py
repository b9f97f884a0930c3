"""What the checkpoint capability does around CRIU: its kernel cache (``/run/criu.kdat``) where
/run is no tmpfs, made once per boot through a private tmpfs /run, so CRIU does not probe the
kernel on each run while a container is frozen; and the cgroup frozen before a dump (CRIU's own
freeze waits 100 ms steps)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from dockyard_arch_linux import cgroups
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


def test_a_cgroup_frozen_for_a_dump_and_thawed_after_a_failed_one(tmp_path: Path) -> None:
    """freeze_for_dump (CRIU would otherwise wait a 100 ms step on a loaded host) freezes a
    v1 freezer cgroup until it reads FROZEN; thaw gives it back, as a failed dump must."""
    import signal
    import subprocess
    import uuid

    layout = cgroups.detect()
    if layout.version == 2 or not layout.controllers.get("freezer") or os.geteuid() != 0:
        pytest.skip("needs root and a cgroup v1 freezer")
    rel = f"/dockyard-test-freeze-{uuid.uuid4().hex[:8]}"
    d = Path(layout.controllers["freezer"] + rel)
    d.mkdir()
    proc = subprocess.Popen(["sleep", "30"])
    try:
        (d / "cgroup.procs").write_text(str(proc.pid))
        cg = cgroups.Cgroup(layout, rel)
        assert ck.freeze_for_dump(cg)
        assert (d / "freezer.state").read_text().strip() == "FROZEN"
        ck.thaw(cg)
        assert (d / "freezer.state").read_text().strip() == "THAWED"
    finally:
        proc.send_signal(signal.SIGKILL)
        ck.thaw(cgroups.Cgroup(layout, rel))
        proc.wait()
        d.rmdir()


class _Freezer:
    """A v1 freezer.state that reads FREEZING until ``settle`` says otherwise."""

    def __init__(self, settle: Any) -> None:
        self.settle, self.writes = settle, []

    def read(self, _path: str) -> str:
        return "FROZEN\n" if self.writes and self.writes[-1] == "FROZEN" and self.settle(self.writes) else "FREEZING\n"

    def write(self, _path: str, text: str) -> None:
        self.writes.append(text)


def test_freeze_v1_thaws_now_and_then_as_runc(monkeypatch: pytest.MonkeyPatch) -> None:
    """A freezer stuck FREEZING (tasks forking) settles only after a thaw: runc's every-50th
    thaw and 10 ms sleep; one that never settles gives up after ``tries``; a gone cgroup too."""
    stuck = _Freezer(lambda w: "THAWED" in w)
    monkeypatch.setattr(cgroups, "_read", stuck.read)
    monkeypatch.setattr(cgroups, "_write", stuck.write)
    assert cgroups.freeze_v1("/fake", step=0)
    assert stuck.writes.index("THAWED") == 49 and stuck.writes[-1] == "FROZEN"
    never = _Freezer(lambda _w: False)
    monkeypatch.setattr(cgroups, "_read", never.read)
    monkeypatch.setattr(cgroups, "_write", never.write)
    assert not cgroups.freeze_v1("/fake", tries=100, step=0)
    assert never.writes.count("FROZEN") == 100 and never.writes.count("THAWED") == 2
    monkeypatch.undo()
    assert not cgroups.freeze_v1("/nonexistent/freezer/dir", step=0)
