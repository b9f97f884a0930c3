"""dockyard.tarsafe: hostile archives are refused, legitimate ones extracted faithfully."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from dockyard import tarsafe
from dockyard.errors import Conflict, InvalidArgument
from dockyard.tarsafe import (
    ArchiveError,
    DeleteWhiteouts,
    OverlayWhiteouts,
    TarWriter,
    UnsafeArchive,
    extract,
    extract_atomic,
)

# --------------------------------------------------------------------------- helpers
#: A VFS_CAP_REVISION_2 capability set: cap_net_bind_service, effective.
CAP = b"\x01\x00\x00\x02" + b"\x00\x04\x00\x00" + b"\x00" * 12

def entry(name: str, kind: str = "file", data: bytes = b"", mode: int | None = None, link: str = "",
          uid: int = 0, gid: int = 0, mtime: int = 1_600_000_000, xattrs: dict[str, str] | None = None,
          dev: tuple[int, int] = (0, 0)) -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE,
               "link": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE, "blk": tarfile.BLKTYPE,
               "fifo": tarfile.FIFOTYPE}[kind]
    ti.mode = mode if mode is not None else (0o755 if kind == "dir" else 0o644)
    ti.uid, ti.gid, ti.mtime = uid, gid, mtime
    ti.linkname = link
    ti.devmajor, ti.devminor = dev
    if kind == "file":
        ti.size = len(data)
    for k, v in (xattrs or {}).items():
        ti.pax_headers["SCHILY.xattr." + k] = v
    return ti, data


def make_tar(path: Path, *entries: tuple[tarfile.TarInfo, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in entries:
            tf.addfile(ti, io.BytesIO(data) if ti.isreg() else None)
    return path


@pytest.fixture
def sandbox(tmp_path: Path) -> dict[str, Path]:
    """A root to extract into and an 'outside' directory a hostile tar must never touch."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret").write_text("keep me")
    return {"root": root, "outside": outside, "tmp": tmp_path}


def snapshot(path: Path) -> dict[str, tuple[int, bytes | str | None]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(path):
        for n in dirnames + filenames:
            p = Path(dirpath, n)
            st = os.lstat(p)
            body: bytes | str | None = None
            if stat.S_ISREG(st.st_mode):
                body = p.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(p)
            out[str(p.relative_to(path))] = (st.st_mode, body)
    return out


# --------------------------------------------------------------------------- hostile archives
def _hostile_cases(outside: Path) -> dict[str, list[tuple[tarfile.TarInfo, bytes]]]:
    return {
        "dotdot": [entry("../evil", data=b"x")],
        "dotdot-nested": [entry("a/../../evil", data=b"x")],
        "absolute": [entry(str(outside / "evil"), data=b"x")],
        "symlink-then-file": [entry("lnk", "sym", link=str(outside)), entry("lnk/evil", data=b"x")],
        "relative-symlink-then-file": [entry("lnk", "sym", link="../outside"),
                                       entry("lnk/evil", data=b"x")],
        "symlink-then-dir": [entry("lnk", "sym", link=str(outside)), entry("lnk/sub", "dir")],
        "hardlink-outside": [entry("h", "link", link="../outside/secret")],
        "hardlink-absolute": [entry("h", "link", link=str(outside / "secret"))],
        "hardlink-through-symlink": [entry("lnk", "sym", link=str(outside)),
                                     entry("h", "link", link="lnk/secret")],
        "hardlink-missing": [entry("h", "link", link="nope")],
        "hardlink-to-dir": [entry("d", "dir"), entry("h", "link", link="d")],
        "char-device": [entry("dev", "chr", dev=(1, 3))],
        "block-device": [entry("dev", "blk", dev=(8, 0))],
        "whiteout-dotdot": [entry(".wh...", data=b"")],
        "whiteout-dot": [entry("a/.wh..", data=b"")],
        "whiteout-through-symlink": [entry("lnk", "sym", link=str(outside)),
                                     entry("lnk/.wh.secret", data=b"")],
        "opaque-through-symlink": [entry("lnk", "sym", link=str(outside)),
                                   entry("lnk/.wh..wh..opq", data=b"")],
        "overlay-xattr": [entry("d", "dir", xattrs={"trusted.overlay.redirect": "/x"})],
        "dir-replaced-by-symlink": [entry("a", "dir"), entry("a/x", data=b"x"),
                                    entry("a", "sym", link=str(outside)), entry("a/evil", data=b"x")],
        "dir-whited-out-then-symlink": [entry("d", "dir"), entry("d/f", data=b"f"), entry(".wh.d"),
                                        entry("d", "sym", link=str(outside)), entry("d/evil", data=b"x")],
        "opaque-then-symlink": [entry("o", "dir"), entry("o/s", "dir"), entry("o/s/f", data=b"f"),
                                entry("o/.wh..wh..opq"), entry("o/s", "sym", link=str(outside)),
                                entry("o/s/evil", data=b"x")],
    }


@pytest.mark.parametrize("case", sorted(_hostile_cases(Path("/x"))))
def test_hostile_archive_refused_and_nothing_escapes(sandbox: dict[str, Path], case: str) -> None:
    outside = sandbox["outside"]
    tar = make_tar(sandbox["tmp"] / "evil.tar", *_hostile_cases(outside)[case])
    before = snapshot(outside)
    target = sandbox["tmp"] / "layer"
    with pytest.raises(UnsafeArchive) as info:
        extract_atomic(tar, target, whiteouts=DeleteWhiteouts())
    assert isinstance(info.value, InvalidArgument)
    assert info.value.member is not None and info.value.member in str(info.value)
    assert snapshot(outside) == before
    assert not (sandbox["tmp"] / "evil").exists()
    assert not target.exists()
    assert [p.name for p in sandbox["tmp"].iterdir() if p.name.startswith(".tmp-")] == []


@pytest.mark.parametrize("case", sorted(_hostile_cases(Path("/x"))))
def test_hostile_archive_refused_when_replacing_inherited(sandbox: dict[str, Path], case: str) -> None:
    outside = sandbox["outside"]
    tar = make_tar(sandbox["tmp"] / "evil.tar", *_hostile_cases(outside)[case])
    before = snapshot(outside)
    with pytest.raises(UnsafeArchive):
        extract_atomic(tar, sandbox["tmp"] / "layer", whiteouts=DeleteWhiteouts(), replace_inherited=True)
    assert snapshot(outside) == before
    assert not (sandbox["tmp"] / "layer").exists()


def test_replace_inherited_symlink_and_file(sandbox: dict[str, Path]) -> None:
    root = sandbox["root"]
    os.symlink(sandbox["outside"], root / "lib")
    (root / "file").write_bytes(b"was a file")
    tar = make_tar(sandbox["tmp"] / "t.tar", entry("lib/x", data=b"x"), entry("file/y", data=b"y"),
                   entry("lib/.wh.secret"))
    extract(tar, root, whiteouts=DeleteWhiteouts(), replace_inherited=True)
    assert not os.path.islink(root / "lib") and sorted(os.listdir(root / "lib")) == ["x"]
    assert (root / "file" / "y").read_bytes() == b"y"
    assert sorted(os.listdir(sandbox["outside"])) == ["secret"]


def test_hostile_overlay_strategy_too(sandbox: dict[str, Path]) -> None:
    tar = make_tar(sandbox["tmp"] / "e.tar", entry("lnk", "sym", link=str(sandbox["outside"])),
                   entry("lnk/.wh.secret", data=b""))
    with pytest.raises(UnsafeArchive, match="symlink"):
        extract(tar, sandbox["root"], whiteouts=OverlayWhiteouts())
    assert (sandbox["outside"] / "secret").read_text() == "keep me"


def test_preexisting_symlink_is_not_followed(sandbox: dict[str, Path]) -> None:
    os.symlink(sandbox["outside"], sandbox["root"] / "lib")
    tar = make_tar(sandbox["tmp"] / "t.tar", entry("lib/evil", data=b"x"))
    with pytest.raises(UnsafeArchive, match="symlink 'lib'"):
        extract(tar, sandbox["root"])
    assert not (sandbox["outside"] / "evil").exists()


def test_devices_allowed_when_asked(sandbox: dict[str, Path]) -> None:
    tar = make_tar(sandbox["tmp"] / "t.tar", entry("null", "chr", dev=(1, 3), mode=0o666))
    extract(tar, sandbox["root"], allow_devices=True)
    st = os.lstat(sandbox["root"] / "null")
    assert stat.S_ISCHR(st.st_mode) and os.major(st.st_rdev) == 1 and os.minor(st.st_rdev) == 3


def _raw_tar(tmp: Path) -> bytes:
    return make_tar(tmp / "ok.tar", entry("a", data=b"A" * 3000), entry("b", data=b"B" * 10)).read_bytes()


def _set_field(buf: bytearray, header: int, offset: int, length: int, value: bytes) -> None:
    buf[header + offset:header + offset + length] = value.ljust(length, b"\0")
    buf[header + 148:header + 156] = b" " * 8
    chk = sum(buf[header:header + 512])
    buf[header + 148:header + 156] = b"%06o\0 " % chk


def _header_offset(raw: bytes, name: bytes) -> int:
    for off in range(0, len(raw), 512):
        if raw[off:off + len(name) + 1] == name + b"\0":
            return off
    raise AssertionError(name)


def test_truncated_in_data(sandbox: dict[str, Path]) -> None:
    raw = _raw_tar(sandbox["tmp"])
    off = _header_offset(raw, b"a")
    bad = sandbox["tmp"] / "bad.tar"
    bad.write_bytes(raw[:off + 512 + 1000])
    with pytest.raises(ArchiveError, match="'a'"):
        extract_atomic(bad, sandbox["tmp"] / "layer")
    assert not (sandbox["tmp"] / "layer").exists()


def test_truncated_in_header(sandbox: dict[str, Path]) -> None:
    raw = _raw_tar(sandbox["tmp"])
    off = _header_offset(raw, b"b")
    bad = sandbox["tmp"] / "bad.tar"
    bad.write_bytes(raw[:off + 200])
    with pytest.raises(ArchiveError, match="corrupt or truncated header"):
        extract_atomic(bad, sandbox["tmp"] / "layer")
    assert not (sandbox["tmp"] / "layer").exists()


def test_huge_size_header(sandbox: dict[str, Path]) -> None:
    raw = bytearray(_raw_tar(sandbox["tmp"]))
    off = _header_offset(raw, b"b")
    _set_field(raw, off, 124, 12, b"77777777777")
    bad = sandbox["tmp"] / "bad.tar"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="claims 8589934591 bytes"):
        extract_atomic(bad, sandbox["tmp"] / "layer")


def test_corrupt_checksum_mid_archive(sandbox: dict[str, Path]) -> None:
    raw = bytearray(_raw_tar(sandbox["tmp"]))
    off = _header_offset(raw, b"b")
    raw[off + 148:off + 156] = b"0000000\0"
    bad = sandbox["tmp"] / "bad.tar"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ArchiveError, match="corrupt or truncated header"):
        extract_atomic(bad, sandbox["tmp"] / "layer")


@pytest.mark.parametrize("content,match", [(b"", "empty file"), (b"hello world" * 100, "not a tar"),
                                           (b"\x1f\x8b\x08\x00" + b"\0" * 100, "compressed")])
def test_not_a_tar(sandbox: dict[str, Path], content: bytes, match: str) -> None:
    bad = sandbox["tmp"] / "bad.tar"
    bad.write_bytes(content)
    with pytest.raises(ArchiveError, match=match):
        extract(bad, sandbox["root"])


def test_sparse_members_refused(sandbox: dict[str, Path]) -> None:
    sparse = sandbox["tmp"] / "sparse"
    with open(sparse, "wb") as f:
        f.truncate(1 << 30)
        f.write(b"head")
    tar = sandbox["tmp"] / "sparse.tar"
    subprocess.run(["tar", "--sparse", "-C", str(sandbox["tmp"]), "-cf", str(tar), "sparse"], check=True)
    with tarfile.open(tar) as tf:
        assert tf.getmember("sparse").issparse()
    with pytest.raises(ArchiveError, match="sparse"):
        extract_atomic(tar, sandbox["tmp"] / "layer")
    assert not (sandbox["tmp"] / "layer").exists()


def test_tar_without_end_marker_is_accepted(sandbox: dict[str, Path]) -> None:
    raw = _raw_tar(sandbox["tmp"])
    off = _header_offset(raw, b"b")
    cut = sandbox["tmp"] / "cut.tar"
    cut.write_bytes(raw[:off + 1024])  # header + one data block, no zero blocks
    extract(cut, sandbox["root"])
    assert (sandbox["root"] / "b").read_bytes() == b"B" * 10


# --------------------------------------------------------------------------- faithful extraction
def test_preserves_metadata(sandbox: dict[str, Path]) -> None:
    root = sandbox["root"]
    tar = make_tar(
        sandbox["tmp"] / "t.tar",
        entry("d", "dir", mode=0o750, uid=1000, gid=1001, mtime=1_500_000_000),
        entry("d/f", data=b"hello", mode=0o4755, uid=1000, gid=1001, mtime=1_400_000_000,
              xattrs={"user.note": "hi", "security.capability": CAP.decode("latin-1")}),
        entry("d/h", "link", link="d/f"),
        entry("d/s", "sym", link="../abs/target", uid=7, gid=8),
        entry("d/p", "fifo", mode=0o600),
        entry("e/deep/x", data=b"implicit parents"),
    )
    res = extract(tar, root)
    f = root / "d" / "f"
    st = os.lstat(f)
    assert f.read_bytes() == b"hello"
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert (st.st_uid, st.st_gid) == (1000, 1001)
    assert st.st_mtime == 1_400_000_000
    assert os.getxattr(f, "user.note") == b"hi"
    assert os.getxattr(f, "security.capability") == CAP
    assert os.lstat(root / "d" / "h").st_ino == st.st_ino and st.st_nlink == 2
    assert os.readlink(root / "d" / "s") == "../abs/target"
    assert (os.lstat(root / "d" / "s").st_uid, os.lstat(root / "d" / "s").st_gid) == (7, 8)
    assert stat.S_ISFIFO(os.lstat(root / "d" / "p").st_mode)
    dst = os.lstat(root / "d")
    assert stat.S_IMODE(dst.st_mode) == 0o750 and dst.st_mtime == 1_500_000_000
    assert (dst.st_uid, dst.st_gid) == (1000, 1001)
    assert (root / "e" / "deep" / "x").read_bytes() == b"implicit parents"
    assert res.size == len(b"hello") + len(b"implicit parents")
    assert res.digest == "sha256:" + hashlib.sha256(tar.read_bytes()).hexdigest()
    assert {"d", "d/f", "d/h", "d/s", "d/p", "e", "e/deep", "e/deep/x"} <= res.unpacked


def test_duplicates_later_entry_wins(sandbox: dict[str, Path]) -> None:
    root = sandbox["root"]
    tar = make_tar(
        sandbox["tmp"] / "t.tar",
        entry("f", data=b"first"), entry("f", data=b"second"),
        entry("d", "dir", mode=0o700), entry("d/keep", data=b"k"), entry("d", "dir", mode=0o711),
        entry("x", "dir"), entry("x/child", data=b"c"), entry("x", data=b"now a file"),
        entry("y", data=b"file"), entry("y", "dir", mode=0o755), entry("y/z", data=b"z"),
        entry("s", "sym", link="a"), entry("s", "sym", link="b"),
    )
    extract(tar, root)
    assert (root / "f").read_bytes() == b"second"
    assert stat.S_IMODE(os.lstat(root / "d").st_mode) == 0o711
    assert (root / "d" / "keep").read_bytes() == b"k"
    assert (root / "x").read_bytes() == b"now a file"
    assert (root / "y" / "z").read_bytes() == b"z"
    assert os.readlink(root / "s") == "b"


def test_delete_whiteouts(sandbox: dict[str, Path]) -> None:
    root = sandbox["root"]
    (root / "gone").write_text("x")
    (root / "gonedir" / "sub").mkdir(parents=True)
    (root / "opq" / "old").mkdir(parents=True)
    (root / "opq" / "oldfile").write_text("x")
    (root / "opq" / "kept").mkdir()
    (root / "opq" / "kept" / "lower").write_text("lower")
    tar = make_tar(
        sandbox["tmp"] / "t.tar",
        entry(".wh.gone"), entry(".wh.gonedir"), entry(".wh.never-existed"),
        entry("opq", "dir"), entry("opq/kept", "dir"), entry("opq/kept/new", data=b"n"),
        entry("opq/.wh..wh..opq"), entry("opq/new", data=b"new"),
        entry(".wh..wh.plnk"),
    )
    extract(tar, root, whiteouts=DeleteWhiteouts())
    assert sorted(os.listdir(root)) == ["opq"]
    assert sorted(os.listdir(root / "opq")) == ["kept", "new"]
    assert sorted(os.listdir(root / "opq" / "kept")) == ["new"]


def test_overlay_whiteouts(sandbox: dict[str, Path]) -> None:
    root = sandbox["root"]
    tar = make_tar(sandbox["tmp"] / "t.tar", entry("a", "dir"), entry("a/.wh.gone"),
                   entry("o", "dir"), entry("o/.wh..wh..opq"), entry("o/f", data=b"f"))
    extract(tar, root, whiteouts=OverlayWhiteouts())
    st = os.lstat(root / "a" / "gone")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(0, 0)
    assert os.getxattr(root / "o", "trusted.overlay.opaque") == b"y"
    assert (root / "o" / "f").read_bytes() == b"f"


def test_whiteouts_literal_without_strategy(sandbox: dict[str, Path]) -> None:
    tar = make_tar(sandbox["tmp"] / "t.tar", entry(".wh.x", data=b"literal"))
    extract(tar, sandbox["root"])
    assert (sandbox["root"] / ".wh.x").read_bytes() == b"literal"


def test_extract_atomic(sandbox: dict[str, Path]) -> None:
    tar = make_tar(sandbox["tmp"] / "t.tar", entry("f", data=b"x"))
    target = sandbox["tmp"] / "layer"
    seen = []
    res = extract_atomic(tar, target, prepare=lambda tmp: seen.append(tmp.name))
    assert (target / "f").read_bytes() == b"x" and res.members == 1
    assert seen and seen[0].startswith(".tmp-layer-")
    with pytest.raises(Conflict):
        extract_atomic(tar, target)
    assert [p.name for p in sandbox["tmp"].iterdir() if p.name.startswith(".tmp-")] == []


def test_extract_refuses_bad_root(sandbox: dict[str, Path]) -> None:
    tar = make_tar(sandbox["tmp"] / "t.tar", entry("f", data=b"x"))
    with pytest.raises(InvalidArgument):
        extract(tar, sandbox["tmp"] / "missing")


# --------------------------------------------------------------------------- writing
def test_writer_round_trip(sandbox: dict[str, Path]) -> None:
    src = sandbox["tmp"] / "src"
    (src / "d" / "e").mkdir(parents=True)
    (src / "d" / "f").write_bytes(b"data")
    os.chmod(src / "d" / "f", 0o640)
    os.chown(src / "d" / "f", 1000, 1000)
    os.setxattr(src / "d" / "f", "user.k", b"v")
    os.setxattr(src / "d" / "f", "user.bin", b"\xff\x00\xfe")
    os.setxattr(src / "d", "trusted.overlay.opaque", b"y")
    os.link(src / "d" / "f", src / "d" / "hard")
    os.symlink("/etc/passwd", src / "d" / "s")
    os.mkfifo(src / "d" / "p")
    out = sandbox["tmp"] / "out.tar"
    with TarWriter(out) as w:
        w.add_tree(src)
        w.add_whiteout("d/removed")
        w.add_opaque("d/e")
    with tarfile.open(out) as tf:
        members = {m.name: m for m in tf.getmembers()}
    assert set(members) == {"d", "d/e", "d/f", "d/hard", "d/s", "d/p", "d/.wh.removed", "d/e/.wh..wh..opq"}
    assert members["d/hard"].islnk() and members["d/hard"].linkname == "d/f"
    assert "SCHILY.xattr.trusted.overlay.opaque" not in members["d"].pax_headers
    assert members["d/f"].uname == ""
    dest = sandbox["tmp"] / "dest"
    dest.mkdir()
    extract(out, dest)
    f = dest / "d" / "f"
    assert f.read_bytes() == b"data" and stat.S_IMODE(os.lstat(f).st_mode) == 0o640
    assert os.lstat(f).st_uid == 1000
    assert os.getxattr(f, "user.k") == b"v"
    assert os.getxattr(f, "user.bin") == b"\xff\x00\xfe"
    assert os.lstat(dest / "d" / "hard").st_ino == os.lstat(f).st_ino
    assert os.readlink(dest / "d" / "s") == "/etc/passwd"
    assert stat.S_ISFIFO(os.lstat(dest / "d" / "p").st_mode)
    assert os.lstat(f).st_mtime == int(os.lstat(src / "d" / "f").st_mtime)


def test_writer_refuses_bad_names(tmp_path: Path) -> None:
    with TarWriter(tmp_path / "o.tar") as w:
        with pytest.raises(UnsafeArchive):
            w.add_whiteout("../x")
        with pytest.raises(InvalidArgument):
            w.add_whiteout("")


def test_split_name() -> None:
    assert tarsafe.split_name("./a//b/") == ["a", "b"]
    assert tarsafe.split_name("./") == []
    with pytest.raises(UnsafeArchive):
        tarsafe.split_name("a/\x00")
    with pytest.raises(ArchiveError):
        tarsafe.split_name("x" * 256)


def test_non_utf8_names_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (Path(os.fsdecode(os.fsencode(src) + b"/caf\xe9"))).write_bytes(b"latin-1 name")
    (src / "ünï").write_bytes(b"utf-8 name")
    with TarWriter(tmp_path / "o.tar") as w:
        w.add_tree(src)
    dest = tmp_path / "dest"
    dest.mkdir()
    extract(tmp_path / "o.tar", dest)
    assert sorted(os.listdir(os.fsencode(dest))) == [b"caf\xe9", "ünï".encode()]
    assert Path(os.fsdecode(os.fsencode(dest) + b"/caf\xe9")).read_bytes() == b"latin-1 name"


def test_secure_join(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "usr" / "lib").mkdir(parents=True)
    os.symlink("/etc", root / "abs")  # absolute: resolved inside root
    os.symlink("../../../../..", root / "usr" / "up")  # climbs: clamped at root
    os.symlink("usr/lib", root / "lib")
    os.symlink("loop2", root / "loop1")
    os.symlink("loop1", root / "loop2")
    join = tarsafe.secure_join
    assert join(root, "/abs/passwd") == root / "etc" / "passwd"
    assert join(root, "usr/up/etc") == root / "etc"
    assert join(root, "../../../etc/shadow") == root / "etc" / "shadow"
    assert join(root, "lib/x/../y") == root / "usr" / "lib" / "y"
    assert join(root, "/") == root and join(root, "") == root
    assert join(root, "missing/deeper") == root / "missing" / "deeper"
    with pytest.raises(UnsafeArchive, match="symbolic links"):
        join(root, "loop1/x")
    with pytest.raises(UnsafeArchive):
        join(root, "a\x00b")
