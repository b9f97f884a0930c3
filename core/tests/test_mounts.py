"""dockyard.mounts: mountinfo decoding, mount(8) and umount2 wrappers."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from dockyard import mounts
from dockyard.errors import Conflict
from dockyard.mounts import Mount, MountError, mount, read_mounts, umount, unescape

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


@pytest.mark.parametrize("raw,decoded", [
    (rb"/plain", "/plain"),
    (rb"/with\040space", "/with space"),
    (rb"/tab\011and\012newline", "/tab\tand\nnewline"),
    (rb"/back\134slash\134040", "/back\\slash\\040"),  # an escaped backslash is not an escape
    (rb"/not\08octal\9", "/not\\08octal\\9"),
    ("/ünïcode".encode(), "/ünïcode"),
    (b"/latin1-\xe9", os.fsdecode(b"/latin1-\xe9")),  # what str(Path(...)) gives for that name
])
def test_unescape(raw: bytes, decoded: str) -> None:
    assert unescape(raw) == decoded


def test_read_mounts_parses_optional_fields_and_escapes(tmp_path: Path) -> None:
    info = tmp_path / "mountinfo"
    info.write_bytes(
        b"22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n"
        b"30 22 0:40 / /srv/a\\040b rw master:3 shared:7 - tmpfs dockyard\\040x rw,size=1k\n"
        b"31 22 0:41 / /srv/no-separator rw\n"
        b"\n"
    )
    assert read_mounts(info) == [Mount("/", "ext4", "/dev/sda1"), Mount("/srv/a b", "tmpfs", "dockyard x")]


def test_read_mounts_of_this_process() -> None:
    found = read_mounts()
    assert any(m.point == "/" for m in found)
    assert all(isinstance(m, tuple) and len(m) == 3 for m in found)


@needs_root
def test_mount_and_umount_a_tricky_path(tmp_path: Path) -> None:
    target = tmp_path / "a dir\\with\tescapes"
    target.mkdir()
    mount("dockyard-mounts-test", str(target), fstype="tmpfs", options="size=1m")
    try:
        assert Mount(str(target), "tmpfs", "dockyard-mounts-test") in read_mounts()
        umount(str(target))
        assert str(target) not in {m.point for m in read_mounts()}
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@needs_root
def test_mount_resolves_relative_paths_from_cwd(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    mount("dockyard-mounts-test", "m", fstype="tmpfs", cwd=tmp_path)
    try:
        assert str(tmp_path / "m") in {m.point for m in read_mounts()}
    finally:
        umount(str(tmp_path / "m"), detach=True)


@needs_root
def test_umount_busy_is_a_conflict(tmp_path: Path) -> None:
    mount("dockyard-mounts-test", str(tmp_path), fstype="tmpfs")
    try:
        with open(tmp_path / "held", "w"), pytest.raises(Conflict, match="busy"):
            umount(str(tmp_path))
    finally:
        umount(str(tmp_path), detach=True)


def test_umount_of_a_plain_directory_does_nothing(tmp_path: Path) -> None:
    umount(str(tmp_path))
    umount(str(tmp_path), detach=True)


def test_umount_failure_is_a_mount_error(tmp_path: Path) -> None:
    with pytest.raises(MountError, match="umount"):
        umount(str(tmp_path / "missing"))


def test_mount_failure_carries_mounts_message(tmp_path: Path) -> None:
    with pytest.raises(MountError, match=r"mount of .*/nowhere failed: .+"):
        mount("none", str(tmp_path / "nowhere"), fstype="no-such-filesystem")


def test_mount_timeout_is_a_mount_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(cmd: list[str], **kw: object) -> None:
        raise subprocess.TimeoutExpired(cmd, 0.1)

    monkeypatch.setattr(mounts.subprocess, "run", slow)
    with pytest.raises(MountError, match="timed out"):
        mount("src", "/target", options="bind", timeout=0.1)
