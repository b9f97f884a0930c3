"""Sealed in-memory copies of the runtime binary (dockyard_arch_linux.sealed)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

from dockyard_arch_linux.sealed import SEALS, SealedRuntimes
from dockyard_plugin_sdk.testing import wait_for

F_GET_SEALS = 1034


def test_a_runtime_runs_from_a_sealed_copy_under_its_own_name(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "crun"
    fake.parent.mkdir()
    shutil.copy2("/bin/sleep", fake)  # any binary called crun
    sealed = SealedRuntimes(tmp_path / "sealed")
    link = sealed.path(str(fake))
    assert link != str(fake) and os.path.basename(link) == "crun"
    assert sealed.path(str(fake)) == link  # one copy while the binary is unchanged
    fd = int(os.readlink(link).rsplit("/", 1)[1])
    assert os.readlink(link) == f"/proc/{os.getpid()}/fd/{fd}"
    assert fcntl.fcntl(fd, F_GET_SEALS) == SEALS  # what crun checks before copying itself
    with open(link, "rb") as fh, open(fake, "rb") as orig:
        assert fh.read() == orig.read()
    proc = subprocess.Popen([link, "5"])
    try:
        wait_for(lambda: os.readlink(f"/proc/{proc.pid}/exe").startswith("/memfd:crun"), 10, "the exec")
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "crun"  # the monitor's reaping goes by it
    finally:
        proc.kill()
        proc.wait()
    # an upgrade (another file in its place) gets a new copy
    shutil.copy2("/bin/true", tmp_path / "new")
    os.replace(tmp_path / "new", fake)
    again = sealed.path(str(fake))
    assert again != link and os.path.basename(again) == "crun"
    assert subprocess.run([again]).returncode == 0  # /bin/true now
    assert os.path.exists(link)  # the old copy stays runnable until close
    # a second instance on the same directory has copies of its own
    other = SealedRuntimes(tmp_path / "sealed")
    assert other.path(str(fake)) not in (link, again)
    other.close()
    assert subprocess.run([again]).returncode == 0
    sealed.close()
    assert not (tmp_path / "sealed").exists()
    assert not os.path.exists(f"/proc/self/fd/{fd}")


def test_other_runtimes_and_missing_binaries_run_as_they_are(tmp_path: Path) -> None:
    sealed = SealedRuntimes(tmp_path / "sealed")
    assert sealed.path("/usr/bin/runc") == "/usr/bin/runc"
    assert sealed.path(str(tmp_path / "crun")) == str(tmp_path / "crun")  # not there
    sealed.close()
