"""Wheels of the tree and fresh virtual environments installed from them alone, offline.

Shared by ``tests/packaging`` (the wheels a release would ship, installed into fresh venvs)
and ``tools/test_alone.py`` (each distribution's own tests in a venv holding only what it
declares). Importable as ``tools.wheelhouse`` (the root is on pytest's path) or, from a script
in ``tools/``, as ``wheelhouse``.

* Our wheels: :func:`build_wheels` builds each project from a copy of its own directory
  (``pip wheel --no-deps --no-build-isolation``, one pip per share of the CPUs);
  :func:`build_editable` asks a project's build backend for a PEP 660 editable wheel of the
  directory itself (setuptools writes a ``.pth`` naming its ``src``: 0.2 s, no copy).
* Third-party wheels: :func:`repack` makes a wheel of a distribution installed in the running
  (main) venv from the files its RECORD lists, so installing needs no index and gets the
  versions the rest of the suite tests; :func:`third_party_closure` says which ones.
* :class:`Venv`: ``python -m venv --without-pip`` (no ``--system-site-packages``), filled by the
  running interpreter's pip through ``pip --python`` (a pip per venv would cost a few seconds
  each) with ``--no-index``; :attr:`Venv.env` is an environment that cannot see the tree.

Failures raise :class:`WheelhouseError`, an ``AssertionError`` (pytest reports it as a failed
assertion, with pip's output).
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
import subprocess
import sys
import tomllib
import zipfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
#: Left out of the copies a wheel is built from (leftovers of in-tree builds, caches, tests).
NOT_COPIED = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".tox",
                                    "tests")
#: Environment variables that would let a venv's processes see the tree or the main venv.
LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV", "PIP_")


class WheelhouseError(AssertionError):
    """A wheel could not be built or repacked, or pip could not install."""


def distributions() -> list[Path]:
    """``tools/distributions.py``'s list (loaded by path: this module has two import names)."""
    spec = importlib.util.spec_from_file_location("_tools_distributions", ROOT / "tools" / "distributions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.distributions()


def pyproject(directory: Path) -> dict:
    return tomllib.loads((directory / "pyproject.toml").read_text())


def wheel_metadata(wheel: Path) -> tuple[str, list[Requirement]]:
    """(canonical name, Requires-Dist) of a wheel."""
    with zipfile.ZipFile(wheel) as z:
        text = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    name = re.search(r"^Name: (.+)$", text, re.M).group(1).strip()
    return canonicalize_name(name), [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines()
                                     if line.startswith("Requires-Dist:")]


def applies(req: Requirement, extras: Iterable[str] = ()) -> bool:
    """Whether ``req`` is needed by a distribution installed with ``extras`` (its marker, if
    any, holds for no extra or for one of them)."""
    return req.marker is None or any(req.marker.evaluate({"extra": e}) for e in ("", *extras))


# ------------------------------------------------------------------------------ third-party wheels
def third_party_closure(roots: Iterable[Requirement], ours: set[str],
                        extras: Iterable[str] = ()) -> dict[str, md.Distribution]:
    """The main venv's distributions that ``roots`` need: the roots that apply without an extra
    or with one of ``extras``, then what those need (with the extras each requirement names).
    Names in ``ours`` are left out."""
    extras = tuple(extras)
    found: dict[str, md.Distribution] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    todo = [r for r in roots if applies(r, extras)]
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in ours or (name, frozenset(req.extras)) in seen:
            continue
        seen.add((name, frozenset(req.extras)))
        if name not in found:
            try:
                found[name] = md.distribution(name)
            except md.PackageNotFoundError:
                raise WheelhouseError(f"{name} is needed by our wheels but not installed in the main venv "
                                      "(run make install)") from None
        todo += [r for r in map(Requirement, found[name].requires or []) if applies(r, req.extras)]
    return found


def record_digest(dist: md.Distribution) -> str:
    """A content key of an installed distribution: the hash of its RECORD (every file's hash)."""
    return hashlib.sha256(Path(dist._path, "RECORD").read_bytes()).hexdigest()[:16]


def repack(dist: md.Distribution, out: Path) -> Path:
    """A wheel of an installed distribution, from the files its RECORD lists under
    site-packages (the scripts pip wrote in bin/ are made again from its entry points)."""
    info = Path(dist._path)  # the .dist-info directory
    wheel_file = info / "WHEEL"
    if not wheel_file.exists() or dist.files is None or (info / "direct_url.json").exists():
        raise WheelhouseError(f"{dist.metadata['Name']} in the main venv was not installed from a wheel "
                              f"({info}): cannot repack it")
    tag = next(line.split(":", 1)[1].strip() for line in wheel_file.read_text().splitlines()
               if line.startswith("Tag:"))
    name = re.sub(r"[-_.]+", "_", dist.metadata["Name"]).lower()
    wheel = out / f"{name}-{dist.version}-{tag}.whl"
    site = Path(dist.locate_file(""))
    skip = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}
    record = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_STORED) as z:
        for f in dist.files:
            if f.parts[0] == ".." or "__pycache__" in f.parts or (f.parts[0] == info.name and f.name in skip):
                continue
            data = (site / f).read_bytes()
            z.writestr(f.as_posix(), data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{f.as_posix()},sha256={digest},{len(data)}")
        record.append(f"{info.name}/RECORD,,")
        z.writestr(f"{info.name}/RECORD", "\n".join(record) + "\n")
    return wheel


# ------------------------------------------------------------------------------ our wheels
def pip_wheel(sources: list[Path], out: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--isolated", "--disable-pip-version-check",
                           "--no-deps", "--no-build-isolation", "-q", "-w", str(out), *map(str, sources)],
                          capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise WheelhouseError(f"pip wheel {' '.join(s.name for s in sources)} failed:\n{proc.stdout}{proc.stderr}")


def build_wheels(sources: list[Path], out: Path) -> None:
    """Wheels of ``sources`` in ``out``: one pip per CPU (up to 4), each building its share (a
    pip start-up is a good part of a build)."""
    shares = max(1, min(os.cpu_count() or 1, 4, len(sources)))
    with ThreadPoolExecutor(shares) as pool:
        list(pool.map(lambda i: pip_wheel(sources[i::shares], out), range(shares)))


def build_editable(directory: Path, out: Path) -> Path:
    """A PEP 660 editable wheel of ``directory`` in ``out``, built by its declared backend
    imported in this interpreter (``--no-build-isolation``'s way: the main venv has setuptools)."""
    backend = pyproject(directory)["build-system"]["build-backend"]
    out.mkdir(parents=True, exist_ok=True)
    code = "import importlib, sys\nimportlib.import_module(sys.argv[1]).build_editable(sys.argv[2])"
    proc = subprocess.run([sys.executable, "-c", code, backend, str(out)], cwd=directory,
                          capture_output=True, text=True, timeout=300)
    wheels = list(out.glob("*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        raise WheelhouseError(f"the editable wheel of {directory} ({backend}) failed:\n{proc.stdout}{proc.stderr}")
    return wheels[0]


@dataclass(frozen=True)
class Wheelhouse:
    ours: Path          #: our wheels (a directory, or the directory above one per wheel)
    third_party: Path   #: what they need, repacked from the main venv
    names: frozenset[str]  #: canonical names of our wheels

    def find_links(self) -> list[str]:
        return ["--find-links", str(self.ours), "--find-links", str(self.third_party)]


def build_wheelhouse(tmp: Path) -> Wheelhouse:
    """A wheel of every distribution of ``tools/distributions.py`` and of the ``dockyard``
    meta-distribution (the root ``pyproject.toml``), each built from a copy of its own
    directory, and the third-party wheels their runtime requirements need, under ``tmp``."""
    sources = []
    for d in distributions():
        sources.append(tmp / "src" / d.relative_to(ROOT).as_posix().replace("/", "__"))
        shutil.copytree(d, sources[-1], ignore=NOT_COPIED)
    meta = tmp / "src" / "dockyard"
    meta.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, meta / name)
    sources.append(meta)
    ours = tmp / "ours"
    build_wheels(sources, ours)
    wheels = sorted(ours.glob("*.whl"))
    if len(wheels) != len(sources):
        raise WheelhouseError(f"built {[w.name for w in wheels]} from {len(sources)} projects")
    metadata = [wheel_metadata(w) for w in wheels]
    names = {name for name, _reqs in metadata}
    third_party = tmp / "third-party"
    third_party.mkdir()
    for dist in third_party_closure([r for _n, reqs in metadata for r in reqs], names).values():
        repack(dist, third_party)
    return Wheelhouse(ours=ours, third_party=third_party, names=frozenset(names))


# ------------------------------------------------------------------------------ fresh venvs
@dataclass
class Venv:
    path: Path

    @classmethod
    def create(cls, path: Path) -> Venv:
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120,
                       capture_output=True)
        return cls(path)

    def bin(self, name: str) -> str:
        return str(self.path / "bin" / name)

    @property
    def env(self) -> dict[str, str]:
        """The caller's environment without what would reach the tree or the main venv."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(LEAKY_ENV)}
        main_bin = str(Path(sys.executable).parent)
        path = [p for p in env.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin").split(os.pathsep) if p != main_bin]
        env["PATH"] = os.pathsep.join([str(self.path / "bin"), *path])
        env["PYTHONNOUSERSITE"] = "1"
        env["XDG_CACHE_HOME"] = str(self.path / "cache")
        return env

    def install(self, wheelhouse: Wheelhouse, *requirements: str, compile: bool = True) -> dict[str, str]:
        """``pip install --no-index`` from the wheelhouse; returns {canonical name: wheel file}
        of what pip installed, having checked that our distributions came from our wheels.
        ``compile=False``: no bytecode now (1.4 s less for a 55 MB venv; imports write it later)."""
        report = self.path / "install-report.json"
        proc = subprocess.run([sys.executable, "-m", "pip", "--python", self.bin("python"), "install", "--isolated",
                               "--disable-pip-version-check", "--no-index", *wheelhouse.find_links(),
                               "--report", str(report), "-q", *([] if compile else ["--no-compile"]),
                               *requirements],
                              capture_output=True, text=True, timeout=300, cwd=self.path)
        if proc.returncode != 0:
            raise WheelhouseError(f"pip install {' '.join(requirements)} failed:\n{proc.stdout}{proc.stderr}")
        installed = {}
        for item in json.loads(report.read_text())["install"]:
            name = canonicalize_name(item["metadata"]["name"])
            installed[name] = url = item["download_info"]["url"]
            if name in wheelhouse.names and not url.startswith(wheelhouse.ours.as_uri() + "/"):
                raise WheelhouseError(f"{name} came from {url}, not from {wheelhouse.ours}")
        return installed

    def distributions(self) -> set[str]:
        """Canonical names of every distribution the venv's own interpreter sees."""
        out = subprocess.run([self.bin("python"), "-c", "import importlib.metadata as m\n"
                              "print('\\n'.join(d.metadata['Name'] for d in m.distributions()))"],
                             capture_output=True, text=True, check=True, env=self.env, cwd=self.path, timeout=60)
        return {canonicalize_name(n) for n in out.stdout.split()}

    def dockyard_distributions(self) -> set[str]:
        """Canonical names of the dockyard distributions the venv's own interpreter sees."""
        return {n for n in self.distributions() if n.startswith("dockyard")}
