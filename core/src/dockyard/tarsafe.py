"""Safe extraction and writing of layer tars.

Every layer driver extracts through :func:`extract` (or :func:`extract_atomic`), and the archive
API uses the same rules. Python's :mod:`tarfile` parses headers; every member is validated here,
rule by rule, before anything touches the disk:

* names are relative, without ``..`` components or NUL bytes (absolute names are refused,
  not silently stripped);
* no member is created through a symlink: every parent component is checked with ``lstat``
  and a symlink there (one this archive made, or one already in the tree) refuses the member;
* hard links name a non-directory inside the tree, reached without symlinks;
* device nodes only when the caller allows them (FIFOs are always fine);
* whiteouts (``.wh.NAME``, ``.wh..wh..opq``) go to a :class:`WhiteoutStrategy` chosen by the
  driver, and their target names are validated like any other name;
* ``trusted.overlay.*`` xattrs are refused (they would steer overlayfs);
* a member claiming more data than the archive holds, a corrupt header mid-archive and trailing
  garbage are refused: :mod:`tarfile` silently stops at a bad header, we do not.

Duplicate entries follow Docker: a later entry replaces an earlier one, except that a directory
over a directory merges (the later metadata wins). Modes, ownership (when running as root),
mtimes, xattrs and hard links are preserved; directory metadata is applied last.

:func:`extract_atomic` and :func:`staging_dir` give all-or-nothing semantics: extraction goes to
a temporary sibling that is renamed into place only on success and removed on any error.

:func:`secure_join` resolves a path inside a root filesystem the way a container sees it
(symlinks followed but clamped to the root), for the archive API's source and destination paths.

:class:`TarWriter` writes diffs (files, directories, symlinks, hard links, devices, whiteouts) in
the PAX format with xattrs, as Docker does.

Everything here blocks: call it from a thread (``asyncio.to_thread``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import secrets
import shutil
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Protocol

from dockyard.errors import Conflict, InvalidArgument

WHITEOUT_PREFIX = ".wh."
WHITEOUT_META_PREFIX = ".wh..wh."
WHITEOUT_OPAQUE = ".wh..wh..opq"
OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque"
XATTR_PAX_PREFIX = "SCHILY.xattr."
#: xattr namespaces never read from or written to a layer tar.
FORBIDDEN_XATTR_PREFIXES = ("trusted.overlay.",)
_CHUNK = 1 << 20


class ArchiveError(InvalidArgument):
    """The archive is malformed (truncated, corrupt header, unsupported entry)."""

    def __init__(self, member: str | None, reason: str) -> None:
        self.member = member
        self.reason = reason
        where = f"member {member!r}: " if member is not None else ""
        super().__init__(f"invalid archive: {where}{reason}")


class UnsafeArchive(ArchiveError):
    """The archive tries to write outside its root or create something not allowed."""

    def __init__(self, member: str | None, reason: str) -> None:
        super().__init__(member, reason)
        where = f"member {member!r}: " if member is not None else ""
        self.args = (f"unsafe archive: {where}{reason}",)


# --------------------------------------------------------------------------- whiteouts
class WhiteoutStrategy(Protocol):
    """How a driver stores Docker whiteouts found in a layer tar."""

    def whiteout(self, root: Path, rel: str) -> None:
        """``rel`` (relative to ``root``, already validated, parent exists) is deleted."""

    def opaque(self, root: Path, rel_dir: str, unpacked: set[str]) -> None:
        """Directory ``rel_dir`` hides everything below it from lower layers.

        ``unpacked`` holds the relative paths this archive created so far.
        """


def _remove(path: Path) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)


@dataclass(frozen=True)
class DeleteWhiteouts:
    """Apply whiteouts by deleting (for drivers holding full trees, like vfs)."""

    def whiteout(self, root: Path, rel: str) -> None:
        _remove(root / rel)

    def opaque(self, root: Path, rel_dir: str, unpacked: set[str]) -> None:
        base = root / rel_dir if rel_dir else root
        if not base.is_dir() or base.is_symlink():
            return
        for dirpath, dirnames, filenames in os.walk(base, topdown=True):
            rel_here = os.path.relpath(dirpath, root)
            rel_here = "" if rel_here == "." else rel_here
            keep_dirs = []
            for name in dirnames:
                rel = f"{rel_here}/{name}" if rel_here else name
                if rel in unpacked and not os.path.islink(os.path.join(dirpath, name)):
                    keep_dirs.append(name)
                elif rel not in unpacked:
                    _remove(Path(dirpath, name))
            dirnames[:] = keep_dirs
            for name in filenames:
                rel = f"{rel_here}/{name}" if rel_here else name
                if rel not in unpacked:
                    os.unlink(os.path.join(dirpath, name))


@dataclass(frozen=True)
class OverlayWhiteouts:
    """Store whiteouts the overlayfs way: a 0/0 char device, ``trusted.overlay.opaque=y``."""

    def whiteout(self, root: Path, rel: str) -> None:
        path = root / rel
        _remove(path)
        os.mknod(path, stat.S_IFCHR | 0o000, os.makedev(0, 0))

    def opaque(self, root: Path, rel_dir: str, unpacked: set[str]) -> None:
        path = root / rel_dir if rel_dir else root
        os.setxattr(path, OVERLAY_OPAQUE_XATTR, b"y", follow_symlinks=False)


# --------------------------------------------------------------------------- names
def split_name(name: str, member: str | None = None) -> list[str]:
    """The components of an archive path, refusing absolute names, ``..`` and NUL bytes.

    ``./a//b/`` gives ``["a", "b"]``; the root itself gives ``[]``.
    """
    member = name if member is None else member
    if "\x00" in name:
        raise UnsafeArchive(member, "name contains a NUL byte")
    if name.startswith("/"):
        raise UnsafeArchive(member, "absolute path")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchive(member, "path contains '..'")
    for p in parts:
        if len(p.encode("utf-8", "surrogateescape")) > 255:
            raise ArchiveError(member, "path component longer than 255 bytes")
    return parts


def _check_dir_chain(root: Path, parts: list[str], member: str, create: bool,
                     created: list[str] | None = None, verified: set[str] | None = None,
                     replace_unless: set[str] | None = None) -> None:
    """Every component of ``parts`` under ``root`` is a real directory (never a symlink).

    Missing ones are created (mode 0755) when ``create``; their relative paths are appended
    to ``created``. ``verified`` caches relative paths already checked during this extraction
    (the caller drops entries whenever it removes something). With ``replace_unless`` (the
    paths this archive made), a symlink or file found on the way that the archive did not make
    is replaced by a directory instead of refusing the member: what the archive says wins
    over an inherited tree, as a directory in an overlay upper layer hides a lower symlink.
    """
    path = str(root)
    for i, part in enumerate(parts):
        path = f"{path}/{part}"
        rel = "/".join(parts[:i + 1])
        if verified is not None and rel in verified:
            continue
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            if not create:
                raise UnsafeArchive(member, f"{rel!r} does not exist") from None
            os.mkdir(path, 0o755)
            if created is not None:
                created.append(rel)
        else:
            if not stat.S_ISDIR(st.st_mode):
                if create and replace_unless is not None and rel not in replace_unless:
                    os.unlink(path)
                    os.mkdir(path, 0o755)
                    if created is not None:
                        created.append(rel)
                elif stat.S_ISLNK(st.st_mode):
                    raise UnsafeArchive(member, f"path goes through symlink {rel!r}")
                else:
                    raise UnsafeArchive(member, f"{rel!r} is not a directory")
        if verified is not None:
            verified.add(rel)


def secure_join(root: str | os.PathLike[str], path: str, max_links: int = 255) -> Path:
    """Resolve ``path`` inside ``root`` as if ``root`` were ``/`` (Docker's FollowSymlinkInScope).

    Symlinks are followed, absolute ones relative to ``root``; ``..`` never climbs above
    ``root``; missing components are kept literally. The result is always ``root`` or below
    it. For the archive API's destination and source paths (``docker cp``), resolved in the
    container's root filesystem. More than ``max_links`` links raise :class:`UnsafeArchive`.
    """
    base = os.path.abspath(os.fspath(root))
    if "\x00" in path:
        raise UnsafeArchive(path, "path contains a NUL byte")
    pending = [p for p in path.split("/") if p][::-1]  # a stack: next component last
    current: list[str] = []
    links = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            if current:
                current.pop()
            continue
        full = os.path.join(base, *current, part)
        try:
            st = os.lstat(full)
        except (FileNotFoundError, NotADirectoryError):
            current.append(part)
            continue
        if stat.S_ISLNK(st.st_mode):
            links += 1
            if links > max_links:
                raise UnsafeArchive(path, f"more than {max_links} symbolic links")
            target = os.readlink(full)
            if target.startswith("/"):
                current = []
            pending.extend([p for p in target.split("/") if p][::-1])
            continue
        current.append(part)
    return Path(base, *current)


# --------------------------------------------------------------------------- digesting reader
class _DigestingReader:
    """A seekable file wrapper hashing the underlying file in order, whatever tarfile seeks."""

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._pos = 0
        self._hashed = 0
        self._hash = hashlib.sha256()

    def _catch_up(self, upto: int) -> None:
        if upto <= self._hashed:
            return
        self._f.seek(self._hashed)
        while self._hashed < upto:
            chunk = self._f.read(min(_CHUNK, upto - self._hashed))
            if not chunk:
                break
            self._hash.update(chunk)
            self._hashed += len(chunk)
        self._f.seek(self._pos)

    def read(self, n: int = -1) -> bytes:
        self._catch_up(self._pos)
        pos = self._pos
        data = self._f.read(n) if n is not None and n >= 0 else self._f.read()
        self._pos = pos + len(data)
        if pos <= self._hashed < self._pos:
            self._hash.update(memoryview(data)[self._hashed - pos:])
            self._hashed = self._pos
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = self._f.seek(offset, whence)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def hexdigest(self) -> str:
        """Hash the rest of the file and return the digest of the whole of it."""
        end = self._f.seek(0, os.SEEK_END)
        self._f.seek(self._pos)
        self._catch_up(end)
        return self._hash.hexdigest()


# --------------------------------------------------------------------------- extraction
@dataclass
class ExtractResult:
    digest: str  # "sha256:..." of the archive bytes (a layer's diff ID)
    size: int  # bytes of regular-file content written
    members: int
    unpacked: set[str] = field(default_factory=set)


def _xattrs_of(member: tarfile.TarInfo) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for key, value in member.pax_headers.items():
        if key.startswith(XATTR_PAX_PREFIX):
            name = key[len(XATTR_PAX_PREFIX):]
            if not name:
                raise ArchiveError(member.name, "empty xattr name")
            if name.startswith(FORBIDDEN_XATTR_PREFIXES):
                raise UnsafeArchive(member.name, f"xattr {name!r} is not allowed in a layer")
            out[name] = value.encode("utf-8", "surrogateescape")
    return out


def _set_xattrs(path: Path, xattrs: dict[str, bytes]) -> None:
    for name, value in xattrs.items():
        try:
            os.setxattr(path, name, value, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
                raise


def extract(tar_path: str | os.PathLike[str], root: str | os.PathLike[str], *,
            whiteouts: WhiteoutStrategy | None = None, allow_devices: bool = False,
            same_owner: bool | None = None, replace_inherited: bool = False) -> ExtractResult:
    """Extract the uncompressed tar ``tar_path`` into the existing directory ``root``.

    ``whiteouts`` translates Docker whiteout entries; ``None`` extracts them as ordinary
    files (the archive API). ``same_owner`` (default: running as root) restores uid/gid.
    ``replace_inherited`` (drivers extracting over a copy of the parent, like vfs): a symlink
    or file already in ``root`` that a member's path goes through is replaced by a directory,
    giving the view an overlay stack would; otherwise such a member is refused. Symlinks the
    archive itself made are never gone through either way.
    Not atomic by itself: use :func:`extract_atomic` or :func:`staging_dir`.

    Raises :class:`UnsafeArchive` / :class:`ArchiveError` naming the offending member.
    """
    root = Path(root)
    if same_owner is None:
        same_owner = os.geteuid() == 0
    if not root.is_dir() or root.is_symlink():
        raise InvalidArgument(f"extraction root {str(root)!r} is not a directory")
    unpacked: set[str] = set()
    deferred_dirs: dict[str, tarfile.TarInfo] = {}
    verified: set[str] = set()
    written = 0
    count = 0
    with open(tar_path, "rb") as raw:
        file_size = os.fstat(raw.fileno()).st_size
        head = raw.read(4)
        raw.seek(0)
        if head[:2] == b"\x1f\x8b" or head == b"\x28\xb5\x2f\xfd" or head[:3] == b"BZh":
            raise ArchiveError(None, "compressed archive; a layer tar must be uncompressed")
        reader = _DigestingReader(raw)
        try:
            tf = tarfile.open(fileobj=reader, mode="r:")  # type: ignore[call-overload]
        except tarfile.TarError as exc:
            if file_size == 0:
                raise ArchiveError(None, "empty file (not a tar archive)") from exc
            raise ArchiveError(None, f"not a tar archive ({exc})") from exc
        with tf:
            while True:
                try:
                    member = tf.next()
                except tarfile.TarError as exc:
                    raise ArchiveError(None, f"corrupt header at offset {tf.offset}: {exc}") from exc
                if member is None:
                    break
                count += 1
                try:
                    written += _extract_member(tf, member, root, whiteouts, allow_devices, same_owner,
                                               unpacked, deferred_dirs, verified, file_size,
                                               unpacked if replace_inherited else None)
                except ArchiveError:
                    raise
                except tarfile.TarError as exc:
                    raise ArchiveError(member.name, f"cannot read data ({exc})") from exc
                except OSError as exc:
                    if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR, errno.EISDIR,
                                     errno.EEXIST, errno.EINVAL, errno.EXDEV):
                        raise ArchiveError(member.name, f"cannot extract ({exc.strerror})") from exc
                    raise
            _check_trailer(reader, tf.offset, file_size)
            digest = "sha256:" + reader.hexdigest()
    # Directory metadata last, deepest first (children would bump mtimes, modes may forbid writes).
    for rel in sorted(deferred_dirs, key=lambda r: r.count("/"), reverse=True):
        path = root / rel
        try:
            if not stat.S_ISDIR(os.lstat(path).st_mode):
                continue
        except FileNotFoundError:
            continue
        _apply_meta(path, deferred_dirs[rel], same_owner)
    return ExtractResult(digest=digest, size=written, members=count, unpacked=unpacked)


def _check_trailer(reader: _DigestingReader, offset: int, file_size: int) -> None:
    """After tarfile stopped, only zero blocks may remain (it stops silently at a bad header)."""
    if offset > file_size:
        raise ArchiveError(None, "archive is truncated")
    reader.seek(offset)
    pos = offset
    while pos < file_size:
        chunk = reader.read(min(_CHUNK, file_size - pos))
        if not chunk:
            break
        if chunk.count(0) != len(chunk):
            bad = pos + next(i for i, b in enumerate(chunk) if b)
            raise ArchiveError(None, f"corrupt or truncated header at offset {offset} "
                                     f"(non-zero data at {bad} after the last valid member)")
        pos += len(chunk)


def _forget(entries: dict[str, tarfile.TarInfo] | set[str], rel: str) -> None:
    """Drop ``rel`` and everything below it (``rel`` empty: everything) from ``entries``."""
    if not rel:
        entries.clear()
        return
    prefix = rel + "/"
    for key in [k for k in entries if k == rel or k.startswith(prefix)]:
        if isinstance(entries, dict):
            del entries[key]
        else:
            entries.discard(key)


def _apply_meta(path: Path, member: tarfile.TarInfo, same_owner: bool) -> None:
    if same_owner:
        os.lchown(path, member.uid, member.gid)
    if not member.issym():
        os.chmod(path, member.mode & 0o7777)
    _set_xattrs(path, _xattrs_of(member))
    mtime = member.mtime
    with contextlib.suppress(OverflowError, ValueError):
        os.utime(path, (mtime, mtime), follow_symlinks=False)


def _extract_member(tf: tarfile.TarFile, member: tarfile.TarInfo, root: Path,
                    whiteouts: WhiteoutStrategy | None, allow_devices: bool, same_owner: bool,
                    unpacked: set[str], deferred_dirs: dict[str, tarfile.TarInfo],
                    verified: set[str], file_size: int, replace_unless: set[str] | None) -> int:
    name = member.name
    parts = split_name(name)
    if member.issparse():
        # A sparse member's logical size is unbounded by the archive's: refuse rather than
        # write terabytes of holes. Docker's own tars never hold sparse members.
        raise ArchiveError(name, "sparse files are not supported in layer tars")
    if member.isreg():
        if member.size < 0 or member.offset_data + member.size > file_size:
            raise ArchiveError(name, f"claims {member.size} bytes of data but the archive "
                                     f"holds only {max(0, file_size - member.offset_data)} more")
    if not parts:
        if member.isdir():
            return 0  # the root itself: its metadata belongs to the driver
        raise UnsafeArchive(name, "a non-directory entry for the archive root")
    base = parts[-1]
    # Whiteouts.
    if whiteouts is not None and base.startswith(WHITEOUT_PREFIX):
        parent = parts[:-1]
        if base == WHITEOUT_OPAQUE:
            _check_dir_chain(root, parent, name, create=True, verified=verified,
                             replace_unless=replace_unless)
            rel_dir = "/".join(parent)
            whiteouts.opaque(root, rel_dir, unpacked)
            for key in [k for k in verified if k.startswith(rel_dir + "/")] if rel_dir else list(verified):
                verified.discard(key)
            return 0
        if base.startswith(WHITEOUT_META_PREFIX):
            return 0  # aufs metadata (.wh..wh.plnk...): ignored, as Docker does
        target = base[len(WHITEOUT_PREFIX):]
        if target in ("", ".", "..") or "/" in target:
            raise UnsafeArchive(name, f"whiteout names an invalid target {target!r}")
        _check_dir_chain(root, parent, name, create=True, verified=verified,
                             replace_unless=replace_unless)
        rel = "/".join([*parent, target])
        whiteouts.whiteout(root, rel)
        _forget(deferred_dirs, rel)
        _forget(verified, rel)
        _forget(unpacked, rel)
        return 0
    created: list[str] = []
    _check_dir_chain(root, parts[:-1], name, create=True, created=created, verified=verified,
                     replace_unless=replace_unless)
    rel = "/".join(parts)
    path = root / rel
    try:
        existing: os.stat_result | None = os.lstat(path)
    except FileNotFoundError:
        existing = None
    if existing is not None and not (stat.S_ISDIR(existing.st_mode) and member.isdir()):
        # Validate a hard link's target before destroying anything.
        if member.islnk():
            _link_source(root, member, verified)
        _remove(path)
        _forget(deferred_dirs, rel)
        _forget(verified, rel)
    written = 0
    if member.isdir():
        if existing is None or not stat.S_ISDIR(existing.st_mode):
            os.mkdir(path, 0o700)
        deferred_dirs[rel] = member
    elif member.isreg():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as dst:
            src = tf.extractfile(member)
            assert src is not None
            while True:
                chunk = src.read(_CHUNK)
                if not chunk:
                    break
                dst.write(chunk)
                written += len(chunk)
        if written != member.size:
            raise ArchiveError(name, f"short data: {written} of {member.size} bytes")
        _apply_meta(path, member, same_owner)
    elif member.issym():
        if not member.linkname or "\x00" in member.linkname:
            raise ArchiveError(name, "symlink with an empty or invalid target")
        os.symlink(member.linkname, path)
        _apply_meta(path, member, same_owner)
    elif member.islnk():
        source = _link_source(root, member, verified)
        if source == path:
            raise UnsafeArchive(name, "hard link to itself")
        os.link(source, path, follow_symlinks=False)
    elif member.isfifo():
        os.mkfifo(path, 0o600)
        _apply_meta(path, member, same_owner)
    elif member.ischr() or member.isblk():
        if not allow_devices:
            kind = "character" if member.ischr() else "block"
            raise UnsafeArchive(name, f"{kind} device {member.devmajor}:{member.devminor} not allowed")
        mode = (stat.S_IFCHR if member.ischr() else stat.S_IFBLK) | 0o600
        os.mknod(path, mode, os.makedev(member.devmajor, member.devminor))
        _apply_meta(path, member, same_owner)
    else:
        raise ArchiveError(name, f"unsupported entry type {member.type!r}")
    unpacked.update(created)
    unpacked.add(rel)
    return written


def _link_source(root: Path, member: tarfile.TarInfo, verified: set[str]) -> Path:
    name = member.name
    target = split_name(member.linkname, member=name)
    if not target:
        raise UnsafeArchive(name, "hard link to the archive root")
    _check_dir_chain(root, target[:-1], name, create=False, verified=verified)
    source = root.joinpath(*target)
    try:
        st = os.lstat(source)
    except FileNotFoundError:
        raise UnsafeArchive(name, f"hard link target {member.linkname!r} does not exist") from None
    if stat.S_ISDIR(st.st_mode):
        raise UnsafeArchive(name, f"hard link to directory {member.linkname!r}")
    return source


# --------------------------------------------------------------------------- atomicity
def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def staging_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary sibling of ``target``; rename it to ``target`` on success.

    On any exception the temporary directory is removed and ``target`` is untouched. An
    existing ``target`` raises :class:`dockyard.errors.Conflict` (and the work is discarded).
    Temporary names start with ``.tmp-`` so owners can sweep leftovers of a crash.
    """
    target = Path(target)
    tmp = target.parent / f".tmp-{target.name}-{secrets.token_hex(6)}"
    os.mkdir(tmp, 0o700)
    try:
        yield tmp
        try:
            os.rename(tmp, target)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR, errno.ENOTDIR):
                raise Conflict(f"{str(target)!r} already exists") from exc
            raise
        _fsync_dir(target.parent)
    except BaseException:
        if os.path.lexists(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
        raise


def extract_atomic(tar_path: str | os.PathLike[str], target: str | os.PathLike[str], *,
                   prepare: Callable[[Path], None] | None = None,
                   whiteouts: WhiteoutStrategy | None = None, allow_devices: bool = False,
                   same_owner: bool | None = None, replace_inherited: bool = False) -> ExtractResult:
    """Extract into a new directory ``target`` all or nothing.

    ``prepare(tmp)`` may fill the staging directory first (vfs copies the parent tree).
    """
    with staging_dir(target) as tmp:
        if prepare is not None:
            prepare(tmp)
        return extract(tar_path, tmp, whiteouts=whiteouts, allow_devices=allow_devices,
                       same_owner=same_owner, replace_inherited=replace_inherited)


# --------------------------------------------------------------------------- writing
def _read_xattrs(path: Path) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return out
        raise
    for name in sorted(names):
        if name.startswith(FORBIDDEN_XATTR_PREFIXES):
            continue
        if name.startswith("security.") and name != "security.capability":
            continue
        try:
            out[name] = os.getxattr(path, name, follow_symlinks=False)
        except OSError as exc:
            if exc.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
                raise
    return out


class TarWriter:
    """Write a layer tar (PAX, xattrs, hard links detected by inode, Docker whiteouts).

    Names are relative paths without a leading ``./``; owner names are left empty so that the
    output depends only on the tree. Use as a context manager or call :meth:`close`.
    """

    def __init__(self, out: str | os.PathLike[str] | BinaryIO) -> None:
        if isinstance(out, (str, os.PathLike)):
            self._tf = tarfile.open(os.fspath(out), "w", format=tarfile.PAX_FORMAT)
        else:
            self._tf = tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT)
        self._links: dict[tuple[int, int], str] = {}
        self._out = out

    def __enter__(self) -> TarWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _info(self, name: str) -> tarfile.TarInfo:
        ti = tarfile.TarInfo(name)
        ti.uname = ti.gname = ""
        return ti

    def add(self, root: str | os.PathLike[str], rel: str) -> None:
        """Add the single entry ``rel`` of ``root`` (not its children). Sockets are skipped."""
        parts = split_name(rel)
        if not parts:
            raise InvalidArgument("cannot add the root itself")
        name = "/".join(parts)
        path = Path(root, name)
        st = os.lstat(path)
        ti = self._info(name)
        ti.mode = stat.S_IMODE(st.st_mode)
        ti.uid, ti.gid = st.st_uid, st.st_gid
        ti.mtime = int(st.st_mtime)
        for key, value in _read_xattrs(path).items():
            try:
                ti.pax_headers[XATTR_PAX_PREFIX + key] = value.decode("utf-8")
            except UnicodeDecodeError:
                ti.pax_headers["hdrcharset"] = "BINARY"
                ti.pax_headers[XATTR_PAX_PREFIX + key] = value.decode("utf-8", "surrogateescape")
        mode = st.st_mode
        if stat.S_ISREG(mode):
            inode = (st.st_dev, st.st_ino)
            if st.st_nlink > 1 and inode in self._links:
                ti.type = tarfile.LNKTYPE
                ti.linkname = self._links[inode]
                self._tf.addfile(ti)
                return
            if st.st_nlink > 1:
                self._links[inode] = name
            ti.type = tarfile.REGTYPE
            ti.size = st.st_size
            with open(path, "rb") as f:
                self._tf.addfile(ti, f)
            return
        if stat.S_ISDIR(mode):
            ti.type = tarfile.DIRTYPE
        elif stat.S_ISLNK(mode):
            ti.type = tarfile.SYMTYPE
            ti.linkname = os.readlink(path)
        elif stat.S_ISFIFO(mode):
            ti.type = tarfile.FIFOTYPE
        elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
            ti.type = tarfile.CHRTYPE if stat.S_ISCHR(mode) else tarfile.BLKTYPE
            ti.devmajor, ti.devminor = os.major(st.st_rdev), os.minor(st.st_rdev)
        else:
            return  # sockets and the like: not part of a layer
        self._tf.addfile(ti)

    def add_tree(self, root: str | os.PathLike[str], rel: str = "") -> None:
        """Add ``rel`` (the whole of ``root`` when empty) and everything below it, sorted."""
        root = Path(root)
        if rel:
            self.add(root, rel)
        start = root / rel if rel else root
        if not start.is_dir() or start.is_symlink():
            return
        for entry in sorted(os.scandir(start), key=lambda e: e.name):
            child = f"{rel}/{entry.name}" if rel else entry.name
            if entry.is_dir(follow_symlinks=False):
                self.add_tree(root, child)
            else:
                self.add(root, child)

    def add_whiteout(self, rel: str) -> None:
        """Record that ``rel`` was deleted (``dir/.wh.name``)."""
        parts = split_name(rel)
        if not parts:
            raise InvalidArgument("cannot white out the root")
        self._add_marker("/".join([*parts[:-1], WHITEOUT_PREFIX + parts[-1]]))

    def add_opaque(self, rel_dir: str) -> None:
        """Record that directory ``rel_dir`` hides its lower contents (``dir/.wh..wh..opq``)."""
        parts = split_name(rel_dir)
        self._add_marker("/".join([*parts, WHITEOUT_OPAQUE]))

    def _add_marker(self, name: str) -> None:
        ti = self._info(name)
        ti.type = tarfile.REGTYPE
        ti.mode = 0o644
        ti.size = 0
        ti.mtime = 0
        self._tf.addfile(ti)

    def close(self) -> int:
        """Finish the archive; returns its size in bytes."""
        if not self._tf.closed:
            self._tf.close()
        if isinstance(self._out, (str, os.PathLike)):
            return os.path.getsize(self._out)
        return self._tf.offset


def sha256_file(path: str | os.PathLike[str]) -> str:
    """``sha256:<hex>`` of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return "sha256:" + h.hexdigest()
