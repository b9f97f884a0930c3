"""Build contexts: a tar of the context directory with ``.dockerignore`` applied (client side)."""

from __future__ import annotations

import fnmatch
import hashlib
import io
import os
import tarfile
from pathlib import Path

from dockyard_compose.errors import ComposeError


def _patterns(root: Path) -> list[tuple[bool, str]]:
    path = root / ".dockerignore"
    if not path.is_file():
        return []
    out: list[tuple[bool, str]] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        pat = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        out.append((neg, pat))
    return out


def ignored(rel: str, patterns: list[tuple[bool, str]]) -> bool:
    """Last matching pattern wins; a pattern matching a directory excludes what is below it."""
    result = False
    parts = rel.split("/")
    for neg, pat in patterns:
        hit = any(fnmatch.fnmatchcase("/".join(parts[:i]), pat) or
                  ("**" in pat and fnmatch.fnmatchcase("/".join(parts[:i]), pat.replace("**/", "")))
                  for i in range(1, len(parts) + 1))
        if hit:
            result = not neg
    return result


def build_context(context: Path, dockerfile: str | None, inline: str | None) -> tuple[bytes, str]:
    """Return the context tar and the Dockerfile path to send (relative to the context)."""
    if not context.is_dir():
        raise ComposeError(f"build context {context} is not a directory")
    patterns = _patterns(context)
    buf = io.BytesIO()
    name = dockerfile or "Dockerfile"
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for dirpath, dirnames, filenames in os.walk(context):
            rel_dir = os.path.relpath(dirpath, context)
            dirnames.sort()
            for d in list(dirnames):
                rel = os.path.normpath(os.path.join(rel_dir, d))
                if ignored(rel, patterns) and not any(neg for neg, _ in patterns):
                    dirnames.remove(d)
            for f in sorted(filenames):
                rel = os.path.normpath(os.path.join(rel_dir, f))
                keep = rel in (".dockerignore", name)
                if not keep and ignored(rel, patterns):
                    continue
                info = tf.gettarinfo(os.path.join(dirpath, f), arcname=rel)
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                if info.isreg():
                    with open(os.path.join(dirpath, f), "rb") as fh:
                        tf.addfile(info, fh)
                else:
                    tf.addfile(info)
        if inline is not None:
            data = inline.encode()
            name = f".dockyard-compose.Dockerfile.{hashlib.sha256(data).hexdigest()[:12]}"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        elif dockerfile and Path(dockerfile).is_absolute():
            src = Path(dockerfile)
            if not src.is_file():
                raise ComposeError(f"Dockerfile {src} not found")
            data = src.read_bytes()
            name = f".dockyard-compose.Dockerfile.{hashlib.sha256(data).hexdigest()[:12]}"
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        elif not (context / name).is_file():
            raise ComposeError(f"Dockerfile {context / name} not found")
    return buf.getvalue(), name
