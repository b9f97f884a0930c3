"""The build context: the uploaded tar, unpacked safely, ``.dockerignore`` applied, hashed.

The context tar is unpacked with :func:`dockyard.tarsafe.extract` (no member may escape the
directory, no devices), after decompression when the client compressed it (gzip, bzip2, xz).
``.dockerignore`` is applied here too: the docker CLI already did, docker-py and others may not.
As dockerd does, the Dockerfile and ``.dockerignore`` are read first, then removed too when a
pattern excludes them.

Digests of context files feed the build cache and the build record. A file's digest covers what
the copy carries over: its type, permission bits, size and content (or link target); not its
owner (COPY sets root or ``--chown``) nor its mtime (tarsum, which dockerd's classic cache uses,
leaves mtime out too; so does ours: ``touch`` alone does not invalidate, a content change does).
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import lzma
import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.errors import InvalidArgument
from dockyard.tarsafe import extract, secure_join
from dockyard_builder.dockerignore import Matcher

_CHUNK = 1 << 20


def decompress_to(src: Path, dest: Path) -> bool:
    """Write ``src`` decompressed to ``dest`` when it is gzip/bzip2/xz; False if it is not."""
    with open(src, "rb") as f:
        head = f.read(6)
    opener = None
    if head[:2] == b"\x1f\x8b":
        opener = gzip.open
    elif head[:3] == b"BZh":
        opener = bz2.open
    elif head[:6] == b"\xfd7zXZ\x00":
        opener = lzma.open
    if opener is None:
        return False
    try:
        with opener(src, "rb") as fin, open(dest, "wb") as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)
    except (OSError, EOFError, lzma.LZMAError) as exc:
        raise InvalidArgument(f"cannot decompress the archive: {exc}") from exc
    return True


def is_archive(path: Path) -> bool:
    """A local tar (plain or compressed) that ADD extracts, judged by content as dockerd does."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:2] == b"\x1f\x8b" or head[:3] == b"BZh" or head[:6] == b"\xfd7zXZ\x00":
        return True
    return len(head) == 512 and head[257:262] == b"ustar"


def complete_tail(path: Path) -> None:
    """Add the padding and end-of-archive blocks a client left out.

    The docker CLI's ``-f`` outside the context rewrites the tar and stops right after the last
    member's data (no padding, no trailer); dockerd accepts that, and so do we, but only when
    every member's data is complete: a stream cut inside a member stays an error.
    """
    size = path.stat().st_size
    if size % 512 == 0:
        return
    offset = 0
    with open(path, "rb") as f:
        while offset + 512 <= size:
            f.seek(offset)
            header = f.read(512)
            if header == b"\0" * 512:
                return
            field_ = header[124:136].rstrip(b"\0 ").decode("ascii", "replace") or "0"
            try:
                length = int(field_, 8)
            except ValueError:
                return  # not a tar header: let the extractor report it
            end = offset + 512 + length
            if end > size:
                return  # cut inside a member: the extractor reports it
            offset = offset + 512 + (length + 511) // 512 * 512
    if offset - size >= 512 or offset < size:
        return
    with open(path, "ab") as f:
        f.write(b"\0" * (offset - size) + b"\0" * 1024)


@dataclass
class Source:
    rel: str  # context-relative, "" for the root
    path: Path
    is_dir: bool


@dataclass
class BuildContext:
    root: Path
    dockerfile_name: str = "Dockerfile"
    dockerfile_text: str = ""
    ignore: Matcher | None = None
    digests: dict[str, str] = field(default_factory=dict)  # tree_digest memo

    # ------------------------------------------------------------------ creation
    @classmethod
    def unpack(cls, tar_path: Path, root: Path, dockerfile: str = "Dockerfile") -> BuildContext:
        """Unpack ``tar_path`` into ``root`` (created), apply ``.dockerignore``, read the Dockerfile."""
        root.mkdir(parents=True, exist_ok=True)
        plain = tar_path.with_suffix(".plain")
        if decompress_to(tar_path, plain):
            tar_path = plain
        if tar_path.stat().st_size:
            complete_tail(tar_path)
            extract(tar_path, root, same_owner=False)
        plain.unlink(missing_ok=True)
        return cls.open(root, dockerfile)

    @classmethod
    def open(cls, root: Path, dockerfile: str = "Dockerfile") -> BuildContext:
        ctx = cls(root=root, dockerfile_name=dockerfile or "Dockerfile")
        ignore_file = root / ".dockerignore"
        if ignore_file.is_file() and not ignore_file.is_symlink():
            ctx.ignore = Matcher.from_file_text(ignore_file.read_text(errors="replace"))
        ctx.dockerfile_text = ctx._read_dockerfile()
        if ctx.ignore is not None:
            ctx._apply_ignore()
        return ctx

    def _read_dockerfile(self) -> str:
        name = self.dockerfile_name
        candidates = [name]
        if name == "Dockerfile":
            candidates.append("dockerfile")
        for cand in candidates:
            path = secure_join(self.root, cand)
            if path.is_file():
                self.dockerfile_name = cand
                return path.read_text(errors="replace")
        raise InvalidArgument(f"Cannot locate specified Dockerfile: {name}")

    def _apply_ignore(self) -> None:
        assert self.ignore is not None
        keep_walking = self.ignore.has_exceptions()
        for dirpath, dirnames, filenames in os.walk(self.root, topdown=True):
            rel_dir = os.path.relpath(dirpath, self.root)
            rel_dir = "" if rel_dir == "." else rel_dir
            for d in list(dirnames):
                rel = f"{rel_dir}/{d}" if rel_dir else d
                full = os.path.join(dirpath, d)
                if os.path.islink(full):  # a link to a directory: an entry like a file
                    dirnames.remove(d)
                    if self.ignore.excluded(rel):
                        os.unlink(full)
                elif self.ignore.excluded(rel) and not keep_walking:
                    shutil.rmtree(full, ignore_errors=True)
                    dirnames.remove(d)
            for fname in filenames:
                rel = f"{rel_dir}/{fname}" if rel_dir else fname
                if self.ignore.excluded(rel):
                    os.unlink(os.path.join(dirpath, fname))
        if keep_walking:  # drop excluded directories left empty
            for dirpath, _dirs, _files in os.walk(self.root, topdown=False):
                rel = os.path.relpath(dirpath, self.root)
                if rel != "." and self.ignore.excluded(rel) and not os.listdir(dirpath):
                    os.rmdir(dirpath)

    # ------------------------------------------------------------------ selection
    def select(self, pattern: str) -> list[Source]:
        """The context entries a COPY/ADD source names (a path or a ``filepath.Match`` glob)."""
        return select_in(self.root, pattern, what="build context")

    # ------------------------------------------------------------------ digests
    def digest(self, src: Source) -> str:
        return tree_digest(self.root, src.rel, self.digests)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                raise InvalidArgument(f"syntax error in pattern {pattern!r}")
            body = pattern[i + 1:end]
            if body.startswith("^") or body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body + "]")
            i = end
        elif ch == "\\" and i + 1 < len(pattern):
            i += 1
            out.append(re.escape(pattern[i]))
        else:
            out.append(re.escape(ch))
        i += 1
    out.append("$")
    return re.compile("".join(out), re.S)


def _clean(pattern: str) -> str:
    p = os.path.normpath("/" + pattern).lstrip("/")
    return "" if p == "." else p


def select_in(root: Path, pattern: str, what: str) -> list[Source]:
    """Entries of ``root`` named by ``pattern``; ``..`` cannot climb out of ``root``."""
    if pattern.startswith(("http://", "https://", "git@")):
        raise InvalidArgument(f"cannot fetch {pattern}: ADD of remote URLs is not supported, the builder "
                              "works offline (download the file into the build context and COPY it)")
    rel = _clean(pattern)
    if not any(c in rel for c in "*?["):
        path = secure_join(root, rel) if rel else Path(root)
        if not os.path.lexists(path):
            raise InvalidArgument(f"COPY failed: file not found in {what}: stat {rel or '.'}: "
                                  "file does not exist")
        return [Source(rel, path, path.is_dir() and not path.is_symlink())]
    rx = _glob_regex(rel)
    out: list[Source] = []
    depth = rel.count("/")
    for dirpath, dirnames, filenames in os.walk(root):
        rd = os.path.relpath(dirpath, root)
        rd = "" if rd == "." else rd
        level = rd.count("/") + (1 if rd else 0)
        for name in sorted(dirnames + filenames):
            r = f"{rd}/{name}" if rd else name
            if level == depth and rx.match(r):
                p = Path(dirpath, name)
                out.append(Source(r, p, p.is_dir() and not p.is_symlink()))
        if level >= depth:
            dirnames[:] = []
    if not out:
        raise InvalidArgument(f"COPY failed: no source files were specified (no match for {pattern!r} "
                              f"in {what})")
    return sorted(out, key=lambda s: s.rel)


def content_digest(path: Path, st: os.stat_result | None = None) -> str:
    """``sha256:`` of a file's bytes (of a link's target text): what anyone can check again."""
    st = st or os.lstat(path)
    h = hashlib.sha256()
    if stat.S_ISLNK(st.st_mode):
        h.update(os.readlink(path).encode())
    elif stat.S_ISREG(st.st_mode):
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
    return "sha256:" + h.hexdigest()


def _entry_digest(path: Path, st: os.stat_result, memo: dict[str, str] | None = None, rel: str = "") -> str:
    """The cache's view of one entry: type, permission bits, size and content digest."""
    mode = st.st_mode
    if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
        content = content_digest(path, st)
        if memo is not None:
            memo["content:" + rel] = content
        kind = "f" if stat.S_ISREG(mode) else "l"
        text = f"{kind} {stat.S_IMODE(mode):o} {st.st_size} {content}"
    elif stat.S_ISDIR(mode):
        text = f"d {stat.S_IMODE(mode):o}"
    else:
        text = f"o {stat.S_IFMT(mode):o} {stat.S_IMODE(mode):o}"
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def tree_digest(root: Path, rel: str, memo: dict[str, str] | None = None) -> str:
    """Digest of entry ``rel`` of ``root`` and (for a directory) everything below it, by name."""
    memo = {} if memo is None else memo
    key = rel
    if key in memo:
        return memo[key]
    path = Path(root, rel) if rel else Path(root)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        memo[key] = _entry_digest(path, st, memo, rel)
        return memo[key]
    h = hashlib.sha256()
    h.update(_entry_digest(path, st).encode())
    for entry in sorted(os.scandir(path), key=lambda e: e.name):
        child = f"{rel}/{entry.name}" if rel else entry.name
        h.update(f"\0{entry.name}\0{tree_digest(root, child, memo)}".encode())
    memo[key] = "sha256:" + h.hexdigest()
    return memo[key]


def file_digests(root: Path, rel: str, memo: dict[str, str] | None = None) -> dict[str, str]:
    """``{context path: sha256 of the content}`` of every file and link at or below ``rel`` (the
    build record's view; ``memo`` is :func:`tree_digest`'s, which keeps content digests)."""
    memo = {} if memo is None else memo
    path = Path(root, rel) if rel else Path(root)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode):
        return {rel: memo.get("content:" + rel) or content_digest(path, st)}
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        names = sorted(filenames) + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in names:
            p = Path(dirpath, name)
            r = os.path.relpath(p, root)
            out[r] = memo.get("content:" + r) or content_digest(p)
    return out
