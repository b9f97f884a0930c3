"""Windows layer tars (synthetic): Files/Hives/UtilityVM, whiteouts as tombstones, ``\\`` names,
and hostile members refused before anything is written."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from dockyard.tarsafe import ArchiveError, UnsafeArchive
from dockyard_arch_windows.layers import import_layer, normalize, read_tombstones, scratch_layer


def make_tar(path: Path, entries: list[tuple]) -> Path:
    """entries: (name, data) files, (name, None) directories, (name, "->", target) symlinks,
    (name, "=>", target) hard links."""
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for entry in entries:
            info = tarfile.TarInfo(entry[0])
            if len(entry) == 3:
                info.type = tarfile.SYMTYPE if entry[1] == "->" else tarfile.LNKTYPE
                info.linkname = entry[2]
                tf.addfile(info)
            elif entry[1] is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tf.addfile(info)
            else:
                info.size = len(entry[1])
                tf.addfile(info, io.BytesIO(entry[1]))
    return path


BASE = [("Files", None), ("Files/Windows", None), ("Files/Windows/System32", None),
        ("Files/Windows/System32/cmd.exe", b"MZ cmd"), ("Files/License.txt", b"EULA"),
        ("Hives", None), ("Hives/Software_Delta", b"regf"), ("UtilityVM", None), ("UtilityVM/Files", None),
        ("UtilityVM/Files/EFI/Microsoft/Boot/bootmgfw.efi", b"efi")]


def test_a_base_layer(tmp_path):
    layer = import_layer(make_tar(tmp_path / "base.tar", BASE), tmp_path / "base")
    assert layer.base and layer.has_utility_vm and layer.whiteouts == [] and layer.members == len(BASE)
    assert (tmp_path / "base/Files/Windows/System32/cmd.exe").read_bytes() == b"MZ cmd"
    assert (tmp_path / "base/Hives/Software_Delta").exists()
    assert json.loads((tmp_path / "base/layerchain.json").read_text()) == []


def test_a_diff_layer_with_backslashes_and_whiteouts(tmp_path):
    entries = [("Files\\app", None), ("Files\\app\\app.exe", b"MZ app"), ("files/app/link", "=>", "Files\\app\\app.exe"),
               ("Files/Windows/System32/.wh.cmd.exe", b""), ("Files\\.wh.License.txt", b""),
               ("Hives/Software_Delta", b"regf2")]
    layer = import_layer(make_tar(tmp_path / "diff.tar", entries), tmp_path / "diff", parents=[str(tmp_path / "base")])
    assert not layer.base
    assert (tmp_path / "diff/Files/app/app.exe").read_bytes() == b"MZ app"
    assert (tmp_path / "diff/Files/app/link").samefile(tmp_path / "diff/Files/app/app.exe")
    assert not list((tmp_path / "diff").glob("*\\*"))  # no file named with a backslash
    assert layer.whiteouts == ["\\Files\\Windows\\System32\\cmd.exe", "\\Files\\License.txt"]
    assert read_tombstones(tmp_path / "diff") == layer.whiteouts
    assert (tmp_path / "diff/tombstones.txt").read_text(encoding="utf-8").startswith("\ufeffVersion 1.0\n")
    assert not (tmp_path / "diff/Files/Windows/System32/.wh.cmd.exe").exists()
    assert json.loads((tmp_path / "diff/layerchain.json").read_text()) == [str(tmp_path / "base")]


@pytest.mark.parametrize("entries, why", [
    ([("Files\\..\\..\\evil", b"x")], ".."),
    ([("/Files/x", b"x")], "absolute"),
    ([("\\\\server\\share\\x", b"x")], "absolute"),
    ([("C:\\Windows\\x", b"x")], "drive"),
    ([("Files/a:stream", b"x")], "':'"),
    ([("etc/passwd", b"x")], "outside"),
    ([("Files/x", b"x"), ("Files/y", "=>", "..\\..\\x")], ".."),
    ([("Files/evil", "->", "/"), ("Files/evil/x", b"x")], "symlink"),
    ([("Files/d/.wh..wh..opq", b"")], "opaque"),
    ([("Hives/.wh.Software", b"")], "whiteout outside Files"),
])
def test_hostile_or_foreign_tars_are_refused(tmp_path, entries, why):
    with pytest.raises((UnsafeArchive, ArchiveError), match=why):
        import_layer(make_tar(tmp_path / "bad.tar", entries), tmp_path / "layer")
    assert not (tmp_path / "layer").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tar"]  # nothing left, no staging dir


def test_normalize_and_scratch(tmp_path):
    assert normalize("files\\Windows\\") == "Files/Windows"
    assert normalize("UTILITYVM/Files") == "UtilityVM/Files"
    assert normalize("./") == ""
    s = scratch_layer(tmp_path / "s", ["C:\\l\\top", "C:\\l\\base"])
    assert json.loads((s / "layerchain.json").read_text()) == ["C:\\l\\top", "C:\\l\\base"]
    with pytest.raises(ArchiveError):
        scratch_layer(tmp_path / "s2", [])
