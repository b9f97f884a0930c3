"""COPY/ADD semantics against a directory standing in for a mounted root filesystem."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dockyard.errors import InvalidArgument
from dockyard_builder.context import complete_tail, is_archive, select_in
from dockyard_builder.copier import Owner, copy_sources, lookup_user, parse_chmod, resolve_dest


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
    (root / "etc" / "group").write_text("root:x:0:\nstaff:x:50:\n")
    (root / "existing").mkdir()
    (root / "escape").symlink_to("/")  # an absolute link in the image: resolved inside it
    return root


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    c = tmp_path / "ctx"
    (c / "dir" / "sub").mkdir(parents=True)
    (c / "dir" / "a.txt").write_text("a")
    (c / "dir" / "sub" / "b.txt").write_text("b")
    (c / "one.txt").write_text("1")
    (c / "two.txt").write_text("2")
    os.chmod(c / "one.txt", 0o640)
    return c


def test_resolve_dest() -> None:
    assert resolve_dest("x", "/app") == "/app/x"
    assert resolve_dest("./src/", "/opt/app") == "/opt/app/src/"
    assert resolve_dest(".", "/w") == "/w/"
    assert resolve_dest("/abs", "/w") == "/abs"
    assert resolve_dest("../up", "/w/x") == "/w/up"


def test_directory_contents_are_copied_and_owned_by_root(rootfs: Path, ctx: Path) -> None:
    n = copy_sources(rootfs, select_in(ctx, "dir", "ctx"), "/dst", "/", owner=None, chmod=None,
                     unpack_archives=False, wildcard=False)
    assert n == 3
    assert (rootfs / "dst" / "a.txt").read_text() == "a"
    assert (rootfs / "dst" / "sub" / "b.txt").read_text() == "b"
    assert not (rootfs / "dst" / "dir").exists()
    st = os.stat(rootfs / "dst" / "a.txt")
    assert (st.st_uid, st.st_gid) == (0, 0)


def test_file_to_file_dir_and_existing_dir(rootfs: Path, ctx: Path) -> None:
    one = select_in(ctx, "one.txt", "ctx")
    copy_sources(rootfs, one, "renamed", "/w", owner=None, chmod=None, unpack_archives=False, wildcard=False)
    assert (rootfs / "w" / "renamed").read_text() == "1"
    assert os.stat(rootfs / "w" / "renamed").st_mode & 0o777 == 0o640  # permission bits kept
    copy_sources(rootfs, one, "/into/", "/", owner=None, chmod=None, unpack_archives=False, wildcard=False)
    assert (rootfs / "into" / "one.txt").is_file()
    copy_sources(rootfs, one, "/existing", "/", owner=None, chmod=None, unpack_archives=False, wildcard=False)
    assert (rootfs / "existing" / "one.txt").is_file()


def test_several_sources_need_a_directory_destination(rootfs: Path, ctx: Path) -> None:
    srcs = select_in(ctx, "*.txt", "ctx")
    assert [s.rel for s in srcs] == ["one.txt", "two.txt"]
    with pytest.raises(InvalidArgument, match="destination must be a directory and end with a /"):
        copy_sources(rootfs, srcs, "/notadir", "/", owner=None, chmod=None, unpack_archives=False, wildcard=True)
    copy_sources(rootfs, srcs, "/many/", "/", owner=None, chmod=None, unpack_archives=False, wildcard=True)
    assert sorted(os.listdir(rootfs / "many")) == ["one.txt", "two.txt"]


def test_chown_by_name_and_chmod(rootfs: Path, ctx: Path) -> None:
    owner = lookup_user(rootfs, "app:staff")
    assert owner == Owner(1000, 50)
    assert lookup_user(rootfs, "app") == Owner(1000, 1000)
    assert lookup_user(rootfs, "7:8") == Owner(7, 8)
    with pytest.raises(InvalidArgument, match="no such user: nobody"):
        lookup_user(rootfs, "nobody")
    copy_sources(rootfs, select_in(ctx, "dir", "ctx"), "/owned/deep/", "/", owner=owner, chmod=parse_chmod("0750"),
                 unpack_archives=False, wildcard=False)
    st = os.stat(rootfs / "owned" / "deep" / "sub" / "b.txt")
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 50, 0o750)
    assert os.stat(rootfs / "owned").st_uid == 1000  # directories created by the copy: the --chown user
    with pytest.raises(InvalidArgument, match="octal"):
        parse_chmod("rwx")


def test_symlinks_in_the_image_stay_inside_it(rootfs: Path, ctx: Path) -> None:
    copy_sources(rootfs, select_in(ctx, "one.txt", "ctx"), "/escape/tmp/", "/", owner=None, chmod=None,
                 unpack_archives=False, wildcard=False)
    assert (rootfs / "tmp" / "one.txt").is_file()  # /escape -> / means the image's root


def test_sources_cannot_leave_the_context_and_urls_are_refused(ctx: Path) -> None:
    (ctx / "lnk").symlink_to("/etc")
    with pytest.raises(InvalidArgument, match="file not found in ctx"):
        select_in(ctx, "lnk/passwd", "ctx")  # the link is followed inside the context
    with pytest.raises(InvalidArgument, match="file not found in ctx"):
        select_in(ctx, "../../../etc/passwd", "ctx")  # resolved inside the context: not there
    with pytest.raises(InvalidArgument, match="remote URLs is not supported"):
        select_in(ctx, "https://example.com/x.tgz", "ctx")
    with pytest.raises(InvalidArgument, match="no source files"):
        select_in(ctx, "*.nope", "ctx")


def _tar(entries: dict[str, bytes], gz: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gz else "w") as tf:
        for name, data in entries.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.uid = 42
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def test_add_unpacks_local_archives_safely(rootfs: Path, tmp_path: Path) -> None:
    c = tmp_path / "actx"
    c.mkdir()
    (c / "a.tar.gz").write_bytes(_tar({"x/inside.txt": b"in"}, gz=True))
    (c / "evil.tar").write_bytes(_tar({"../../outside.txt": b"bad"}, gz=False))
    (c / "plain.bin").write_bytes(b"not an archive")
    assert is_archive(c / "a.tar.gz") and is_archive(c / "evil.tar") and not is_archive(c / "plain.bin")
    copy_sources(rootfs, select_in(c, "a.tar.gz", "ctx"), "/opt/", "/", owner=None, chmod=None,
                 unpack_archives=True, wildcard=False)
    assert (rootfs / "opt" / "x" / "inside.txt").read_bytes() == b"in"
    assert os.stat(rootfs / "opt" / "x" / "inside.txt").st_uid == 42  # ADD keeps the archive's owner
    with pytest.raises(InvalidArgument):
        copy_sources(rootfs, select_in(c, "evil.tar", "ctx"), "/opt/", "/", owner=None, chmod=None,
                     unpack_archives=True, wildcard=False)
    assert not (rootfs.parent / "outside.txt").exists()
    # COPY does not unpack
    copy_sources(rootfs, select_in(c, "a.tar.gz", "ctx"), "/copied/", "/", owner=None, chmod=None,
                 unpack_archives=False, wildcard=False)
    assert (rootfs / "copied" / "a.tar.gz").is_file()


def test_complete_tail_adds_missing_padding_only_for_whole_members(tmp_path: Path) -> None:
    whole = _tar({"a": b"x" * 700, "b": b"y" * 10}, gz=False)
    # what the docker CLI sends with -f outside the context: cut right after the last data byte
    cut = whole[: 512 + 1024 + 512 + 10]
    p = tmp_path / "ctx.tar"
    p.write_bytes(cut)
    complete_tail(p)
    with tarfile.open(p) as tf:
        assert tf.extractfile("b").read() == b"y" * 10
    short = whole[: 512 + 300]  # inside member "a": left alone (the extractor refuses it)
    p.write_bytes(short)
    complete_tail(p)
    assert p.read_bytes() == short
