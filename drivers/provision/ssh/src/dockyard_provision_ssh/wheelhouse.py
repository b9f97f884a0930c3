"""Wheels of the dockyard distributions installed on this machine, for a target without network.

The engine a target runs is the code this machine runs: the ``dockyard`` meta-distribution
(the default set) and what it needs, resolved from the installed distributions' metadata
(``Requires-Dist`` without extras), plus ``pip`` itself (the target's venv is made without
``ensurepip``, and pip is run from its own wheel). Nothing is downloaded and nothing is built
with a build backend:

* a distribution installed from a wheel (every third-party one; the meta-distribution) is
  **repacked** from the files its ``RECORD`` lists (the technique of ``tools/wheelhouse.py``,
  which a distribution cannot import: it is the repository's, not installed);
* a distribution installed in editable mode (a development venv: ``direct_url.json`` says
  ``editable``) is packed from what is importable (the top-level packages ``top_level.txt``
  names, found by ``importlib.util.find_spec`` without importing them) and its dist-info's
  ``METADATA`` and ``entry_points.txt``, as a ``py3-none-any`` wheel. ``pip wheel`` of the
  same 12 source directories takes about 9 s on this machine (a pip and a setuptools run
  each); packing them takes about 0.1 s.

The wheelhouse is cached by content: its key hashes every packed file (the ``RECORD`` of a
repacked distribution already lists its files' hashes), so a change to any installed file
makes a new one and an unchanged tree reuses the last. A target keeps the wheelhouse under the
same key, so a second install uploads nothing.

Binary wheels are this machine's (``cp311-...-manylinux``): the target's ``python3`` must be the
same CPython minor version on the same architecture. :func:`python_tags` says which, and the
installer checks the target's before uploading anything.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata as md
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dockyard.errors import Unavailable

#: What a target's venv gets: the default set (the meta-distribution), and pip.
DEFAULT_ROOTS = ("dockyard",)
#: Without the meta-distribution installed, what an engine that runs containers needs.
ENGINE_ROOTS = ("dockyard-core", "dockyard-engine", "dockyard-api-docker", "dockyard-arch-linux",
                "dockyard-storage-overlay", "dockyard-storage-vfs", "dockyard-storage-local",
                "dockyard-network-bridge", "dockyard-network-ipam")
PIP = "pip"
MANIFEST = "manifest.json"
_SKIP_INFO = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


@dataclass(frozen=True)
class Wheelhouse:
    """A directory of wheels (``path``), its content key, the requirements to install from it
    (``roots``), pip's wheel (run on the target to install the rest) and the CPython version
    the binary wheels need (``None`` when every wheel is pure Python)."""

    path: Path
    key: str
    wheels: tuple[str, ...]
    roots: tuple[str, ...]
    pip_wheel: str
    python: str | None

    @property
    def size(self) -> int:
        return sum((self.path / w).stat().st_size for w in self.wheels)


def _editable(dist: md.Distribution) -> bool:
    """Installed in editable mode: ``pip install -e`` says so in ``direct_url.json``; a PEP 660
    editable wheel installed as a file (tools/wheelhouse.py's test venvs) shows only by its
    ``__editable__`` path file or finder in RECORD, with no package files beside it."""
    text = dist.read_text("direct_url.json")
    if text:
        try:
            if json.loads(text).get("dir_info", {}).get("editable"):
                return True
        except ValueError:
            pass
    return any(f.name.startswith("__editable__") for f in dist.files or ())


def _installed(name: str) -> md.Distribution | None:
    """The installed distribution ``name``: the first ``.dist-info`` on ``sys.path`` (an
    ``.egg-info`` left in a source checkout by a build is not an installation)."""
    for dist in md.distributions(name=name):
        if Path(dist._path).name.endswith(".dist-info"):  # noqa: SLF001
            return dist
    return None


def closure(roots: Iterable[str]) -> dict[str, md.Distribution]:
    """The installed distributions ``roots`` need, by canonical name (runtime requirements:
    markers evaluated without extras). A missing one is an :class:`Unavailable` naming it."""
    # imported here, not at module level: every daemon imports the ssh driver (to read the
    # drivers' settings), and packaging costs ~5 MiB and 20 ms
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    found: dict[str, md.Distribution] = {}
    todo = [Requirement(r) for r in roots]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in found:
            continue
        dist = _installed(name)
        if dist is None:
            raise Unavailable(f"{name} is needed on the target but not installed on this machine "
                              f"(pip install {name})")
        found[name] = dist
        for r in map(Requirement, found[name].requires or []):
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r)
    return found


#: Added to the roots when installed here: the target's container units (``dockyard generate``)
#: run ``dockyard supervise``, and ``dockyard daemon install`` works there too.
SUPERVISOR_ROOTS = ("dockyard-generate", "dockyard-supervisor-systemd")


def default_roots() -> tuple[str, ...]:
    """``dockyard`` (the default set) when installed, else the engine's own distributions; and
    :data:`SUPERVISOR_ROOTS` that are installed."""
    base = DEFAULT_ROOTS if _installed("dockyard") is not None else ENGINE_ROOTS
    return base + tuple(r for r in SUPERVISOR_ROOTS if _installed(r) is not None)


# ---------------------------------------------------------------------------------- file lists
def _record_files(dist: md.Distribution) -> list[tuple[str, Path]]:
    """(path in the wheel, file on disk) of a distribution installed from a wheel."""
    info = Path(dist._path)  # noqa: SLF001 - the dist-info directory; importlib.metadata has no public name
    if dist.files is None:
        raise Unavailable(f"{dist.metadata['Name']} has no RECORD ({info}): it cannot be repacked")
    site = Path(dist.locate_file(""))
    out = []
    for f in dist.files:
        if f.parts[0] == ".." or "__pycache__" in f.parts or (f.parts[0] == info.name and f.name in _SKIP_INFO):
            continue
        out.append((f.as_posix(), site / f))
    return out


def _editable_files(dist: md.Distribution) -> list[tuple[str, Path]]:
    """(path in the wheel, file on disk) of an editable distribution: its importable top-level
    packages and modules, and its dist-info's metadata files."""
    info = Path(dist._path)  # noqa: SLF001
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"])
    out: list[tuple[str, Path]] = []
    tops = [t for t in (dist.read_text("top_level.txt") or "").split() if t]
    if not tops:
        raise Unavailable(f"{dist.metadata['Name']} is installed in editable mode without top_level.txt: "
                          "it cannot be packed")
    for top in tops:
        spec = importlib.util.find_spec(top)
        if spec is None:
            raise Unavailable(f"{dist.metadata['Name']}: its package {top} is not importable")
        if spec.submodule_search_locations:
            (pkg_dir,) = list(spec.submodule_search_locations)[:1]
            base = Path(pkg_dir)
            for dirpath, dirnames, filenames in os.walk(base):
                dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.endswith(".egg-info"))
                for fn in sorted(filenames):
                    if fn.endswith((".pyc", ".pyo")):
                        continue
                    full = Path(dirpath) / fn
                    out.append(((Path(top) / full.relative_to(base)).as_posix(), full))
        elif spec.origin:
            out.append((Path(spec.origin).name, Path(spec.origin)))
    dist_info = f"{name}-{dist.version}.dist-info"
    for meta in ("METADATA", "entry_points.txt", "top_level.txt"):
        if (info / meta).exists():
            out.append((f"{dist_info}/{meta}", info / meta))
    return out


def _files(dist: md.Distribution) -> tuple[str, list[tuple[str, Path]]]:
    """("editable" | "wheel", files) of an installed distribution."""
    return ("editable", _editable_files(dist)) if _editable(dist) else ("wheel", _record_files(dist))


def _tag(dist: md.Distribution, kind: str) -> str:
    if kind == "editable":
        return "py3-none-any"
    wheel = dist.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    if not tags:
        raise Unavailable(f"{dist.metadata['Name']} was not installed from a wheel (no WHEEL file): "
                          "it cannot be repacked")
    return ".".join(sorted({t.split("-")[0] for t in tags})) + "-" + \
        ".".join(sorted({t.split("-")[1] for t in tags})) + "-" + ".".join(sorted({t.split("-")[2] for t in tags}))


def _wheel_name(dist: md.Distribution, tag: str) -> str:
    return f"{re.sub(r'[-_.]+', '_', dist.metadata['Name']).lower()}-{dist.version}-{tag}.whl"


def _write_wheel(dist: md.Distribution, kind: str, files: list[tuple[str, Path]], out: Path) -> str:
    tag = _tag(dist, kind)
    wheel = out / _wheel_name(dist, tag)
    info = f"{re.sub(r'[-_.]+', '_', dist.metadata['Name'])}-{dist.version}.dist-info"
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as z:
        for arc, path in files:
            data = path.read_bytes()
            z.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
        if kind == "editable":
            data = (f"Wheel-Version: 1.0\nGenerator: dockyard-provision-ssh\nRoot-Is-Purelib: true\n"
                    f"Tag: {tag}\n").encode()
            z.writestr(f"{info}/WHEEL", data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{info}/WHEEL,sha256={digest},{len(data)}")
            rec_name = f"{info}/RECORD"
        else:
            rec_name = f"{Path(dist._path).name}/RECORD"  # noqa: SLF001
        record.append(f"{rec_name},,")
        z.writestr(rec_name, "\n".join(record) + "\n")
    return wheel.name


def _digest(kind: str, dist: md.Distribution, files: list[tuple[str, Path]]) -> str:
    h = hashlib.sha256(f"{dist.metadata['Name']}\0{dist.version}\0{kind}\0".encode())
    if kind == "wheel":
        h.update(Path(dist._path, "RECORD").read_bytes())  # noqa: SLF001 - lists every file's hash
    else:
        for arc, path in files:
            h.update(arc.encode() + b"\0")
            h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def python_tags(wheels: Iterable[str]) -> str | None:
    """The CPython version (``3.11``) the binary wheels among ``wheels`` are built for, or None
    when all are pure Python (``py3``)."""
    versions = set()
    for w in wheels:
        for interp in w[:-4].split("-")[-3].split("."):
            m = re.fullmatch(r"cp(\d)(\d+)", interp)
            if m:
                versions.add(f"{m.group(1)}.{m.group(2)}")
    if len(versions) > 1:
        raise Unavailable(f"the wheelhouse mixes binary wheels for Python {', '.join(sorted(versions))}")
    return versions.pop() if versions else None


def build(cache: Path, roots: Iterable[str] | None = None) -> tuple[Wheelhouse, bool]:
    """The wheelhouse of ``roots`` (default :func:`default_roots`) and pip, cached under
    ``cache/<key>``. Returns it and whether it was built now (False: taken from the cache).
    Blocking: run it in a thread."""
    roots = tuple(roots or default_roots())
    dists = closure((*roots, PIP))
    listed = {name: _files(d) for name, d in dists.items()}
    key_hash = hashlib.sha256()
    for name in sorted(dists):
        kind, files = listed[name]
        key_hash.update(_digest(kind, dists[name], files).encode())
    key = key_hash.hexdigest()[:20]
    target = cache / key
    manifest = target / MANIFEST
    if manifest.exists():
        m = json.loads(manifest.read_text())
        return Wheelhouse(path=target, key=key, wheels=tuple(m["wheels"]), roots=tuple(m["roots"]),
                          pip_wheel=m["pip"], python=m["python"]), False
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=cache))
    try:
        wheels = {name: _write_wheel(dists[name], *listed[name], tmp) for name in sorted(dists)}
        python = python_tags(wheels.values())
        (tmp / MANIFEST).write_text(json.dumps({"wheels": sorted(wheels.values()), "roots": list(roots),
                                                "pip": wheels[PIP], "python": python}))
        try:
            os.rename(tmp, target)
        except OSError:  # another build made the same key meanwhile: same content
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(cache, keep=3)  # the last few wheelhouses, not every one ever built
    return Wheelhouse(path=target, key=key, wheels=tuple(sorted(wheels.values())), roots=roots,
                      pip_wheel=wheels[PIP], python=python), True


def _prune(cache: Path, keep: int) -> None:
    built = sorted((d for d in cache.iterdir() if d.is_dir() and (d / MANIFEST).exists()),
                   key=lambda d: (d / MANIFEST).stat().st_mtime, reverse=True)
    for old in built[keep:]:
        shutil.rmtree(old, ignore_errors=True)


def this_python() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}"
