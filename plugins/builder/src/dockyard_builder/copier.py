"""COPY and ADD into a mounted root filesystem (blocking; run it in a thread).

dockerd's classic rules: a relative destination is relative to WORKDIR; the destination is a
directory when it ends with ``/``, when several sources are copied, or when it already is one in
the image; a source directory's *contents* are copied; missing parent directories are created
(owned by root, or by ``--chown``'s user when it is given); every copied entry is owned by root
(or ``--chown``) and keeps its permission bits (or takes ``--chmod``'s). ADD unpacks a local tar
archive (plain, gzip, bzip2, xz) into the destination, safely (:mod:`dockyard.tarsafe`), keeping
the archive's owners. Every path in the image is resolved with
:func:`dockyard.tarsafe.secure_join`, so symbolic links in the image cannot lead outside it.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import InvalidArgument
from dockyard.tarsafe import extract, secure_join
from dockyard_builder.context import Source, decompress_to, is_archive


@dataclass(frozen=True)
class Owner:
    uid: int = 0
    gid: int = 0


def resolve_dest(dest: str, workdir: str) -> str:
    """``dest`` made absolute (relative to WORKDIR) and clean; a trailing ``/`` (or a ``.``) is kept
    as a trailing ``/``: it says "a directory"."""
    as_dir = dest.endswith("/") or dest in (".", "./") or dest.endswith("/.")
    joined = posixpath.normpath(posixpath.join(workdir or "/", dest))
    if as_dir and joined != "/":
        joined += "/"
    return joined


def _mkdirs(rootfs: Path, path: str, owner: Owner, chown_new: bool) -> Path:
    """Create ``path`` (absolute in the image) and missing parents; returns the host path."""
    parts = [p for p in path.split("/") if p]
    cur = "/"
    for part in parts:
        cur = posixpath.join(cur, part)
        host = secure_join(rootfs, cur)
        try:
            st = os.lstat(host)
        except FileNotFoundError:
            os.mkdir(host, 0o755)
            if chown_new:
                os.lchown(host, owner.uid, owner.gid)
            else:
                os.lchown(host, 0, 0)
            continue
        if not stat.S_ISDIR(st.st_mode):
            raise InvalidArgument(f"cannot create directory {cur}: a file of that name exists in the image")
    return secure_join(rootfs, path)


def _place(src: Path, dst: Path, owner: Owner, chmod: int | None) -> None:
    """Copy one non-directory entry ``src`` to host path ``dst`` (replacing what is there)."""
    st = os.lstat(src)
    try:
        dst_st = os.lstat(dst)
    except FileNotFoundError:
        dst_st = None
    if dst_st is not None:
        if stat.S_ISDIR(dst_st.st_mode):
            shutil.rmtree(dst)
        else:
            os.unlink(dst)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
        os.lchown(dst, owner.uid, owner.gid)
        return
    if stat.S_ISREG(st.st_mode):
        shutil.copyfile(src, dst, follow_symlinks=False)
    elif stat.S_ISFIFO(st.st_mode):
        os.mkfifo(dst)
    else:
        return  # sockets, devices: not copied from a context
    os.lchown(dst, owner.uid, owner.gid)
    os.chmod(dst, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)


def _copy_tree(src: Path, dst: Path, owner: Owner, chmod: int | None) -> int:
    """Merge the contents of directory ``src`` into existing directory ``dst``; returns entries."""
    count = 0
    for entry in sorted(os.scandir(src), key=lambda e: e.name):
        s = Path(entry.path)
        d = dst / entry.name
        if entry.is_dir(follow_symlinks=False):
            st = os.lstat(s)
            try:
                dst_st = os.lstat(d)
            except FileNotFoundError:
                dst_st = None
            if dst_st is not None and not stat.S_ISDIR(dst_st.st_mode):
                os.unlink(d)
                dst_st = None
            if dst_st is None:
                os.mkdir(d)
            os.lchown(d, owner.uid, owner.gid)
            os.chmod(d, chmod if chmod is not None else stat.S_IMODE(st.st_mode))
            count += 1 + _copy_tree(s, d, owner, chmod)
            os.utime(d, ns=(st.st_atime_ns, st.st_mtime_ns))
        else:
            _place(s, d, owner, chmod)
            count += 1
    return count


def copy_sources(rootfs: Path, sources: list[Source], dest: str, workdir: str, *, owner: Owner | None,
                 chmod: int | None, unpack_archives: bool, wildcard: bool, keyword: str = "COPY") -> int:
    """Copy ``sources`` to ``dest`` in the image mounted at ``rootfs``; returns entries written."""
    chown_given = owner is not None
    owner = owner or Owner()
    dest_abs = resolve_dest(dest, workdir)
    dest_host = secure_join(rootfs, dest_abs)
    dest_is_dir = dest_abs.endswith("/") or dest_host.is_dir()
    if (len(sources) > 1 or wildcard) and not dest_abs.endswith("/") and not dest_host.is_dir():
        if len(sources) > 1:
            raise InvalidArgument(f"When using {keyword} with more than one source file, the destination "
                                  "must be a directory and end with a /")
    count = 0
    for src in sources:
        if src.is_dir:
            target = _mkdirs(rootfs, dest_abs, owner, chown_given)
            count += _copy_tree(src.path, target, owner, chmod)
        elif unpack_archives and src.path.is_file() and is_archive(src.path):
            target = _mkdirs(rootfs, dest_abs, owner, chown_given)
            count += _unpack(src.path, target, owner if chown_given else None)
        elif dest_is_dir:
            target = _mkdirs(rootfs, dest_abs, owner, chown_given)
            _place(src.path, secure_join(rootfs, posixpath.join(dest_abs, posixpath.basename(src.rel))),
                   owner, chmod)
            count += 1
        else:
            parent = posixpath.dirname(dest_abs.rstrip("/")) or "/"
            _mkdirs(rootfs, parent, owner, chown_given)
            target = secure_join(rootfs, dest_abs)
            if target.is_dir() and not target.is_symlink():
                target = target / posixpath.basename(src.rel)
            _place(src.path, target, owner, chmod)
            count += 1
    return count


def _unpack(archive: Path, target: Path, owner: Owner | None) -> int:
    with tempfile.TemporaryDirectory(dir=archive.parent) as tmp:
        plain = Path(tmp, "plain.tar")
        src = plain if decompress_to(archive, plain) else archive
        res = extract(src, target, same_owner=owner is None)
    if owner is not None:
        for rel in res.unpacked:
            os.lchown(target / rel, owner.uid, owner.gid)
    return res.members


def lookup_user(rootfs: Path, spec: str) -> Owner:
    """``--chown`` ``user[:group]`` (names or IDs) via the image's /etc/passwd and /etc/group."""
    user, _, group = spec.partition(":")
    if not user:
        raise InvalidArgument(f"invalid --chown {spec!r}: no user")
    passwd = _table(rootfs, "/etc/passwd")
    groups = _table(rootfs, "/etc/group")
    if user.isdigit():
        uid = int(user)
    else:
        row = next((r for r in passwd if r and r[0] == user and len(r) > 3), None)
        if row is None:
            raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: can't find uid "
                                  f"for user {user}: no such user: {user}")
        uid = int(row[2])
    if not group:  # docker: a user without a group uses the same number as the GID
        return Owner(uid, uid)
    if group.isdigit():
        return Owner(uid, int(group))
    grow = next((r for r in groups if r and r[0] == group and len(r) > 2), None)
    if grow is None:
        raise InvalidArgument(f"unable to convert uid/gid chown string to host mapping: can't find gid "
                              f"for group {group}: no such group: {group}")
    return Owner(uid, int(grow[2]))


def _table(rootfs: Path, path: str) -> list[list[str]]:
    host = secure_join(rootfs, path)
    try:
        text = host.read_text(errors="replace")
    except OSError:
        return []
    return [line.split(":") for line in text.splitlines() if line and not line.startswith("#")]


def parse_chmod(value: str) -> int:
    try:
        mode = int(value, 8)
    except ValueError:
        raise InvalidArgument(f"invalid --chmod {value!r}: expected an octal mode such as 0755") from None
    if mode > 0o7777:
        raise InvalidArgument(f"invalid --chmod {value!r}: out of range")
    return mode
