"""Wheels of the tree and fresh virtual environments installed from them alone.

``wheelhouse`` (session): a wheel of every distribution of ``tools/distributions.py`` and of the
``dockyard`` meta-distribution (the root ``pyproject.toml``), each built from a copy of its own
directory, and next to them the third-party wheels they need. Those are repacked from the
main venv's installed files (the versions the rest of the suite tests), so installing needs
no index: ``pip install --no-index`` proves that every dockyard distribution came from our
wheels, and the tests run offline.

:class:`Venv`: ``python -m venv --without-pip`` (no ``--system-site-packages``), filled by the
main venv's pip through ``pip --python`` (a pip per venv would cost a few seconds each), and
its own ``dockyardd`` and ``dockyard`` run with an environment that cannot see the tree.
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
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dockyard_plugin_sdk.testing import Daemon, Owners, wait_for_socket

ROOT = Path(__file__).resolve().parents[2]
#: Left out of the copies a wheel is built from (leftovers of in-tree builds, caches, tests).
NOT_COPIED = shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", ".tox",
                                    "tests")
#: Environment variables that would let a venv's processes see the tree or the main venv.
LEAKY_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONUSERBASE", "VIRTUAL_ENV", "PIP_")


def distributions() -> list[Path]:
    spec = importlib.util.spec_from_file_location("_tools_distributions", ROOT / "tools" / "distributions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.distributions()


def wheel_metadata(wheel: Path) -> tuple[str, list[Requirement]]:
    """(canonical name, Requires-Dist) of a wheel."""
    with zipfile.ZipFile(wheel) as z:
        text = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    name = re.search(r"^Name: (.+)$", text, re.M).group(1).strip()
    return canonicalize_name(name), [Requirement(line.split(":", 1)[1].strip()) for line in text.splitlines()
                                     if line.startswith("Requires-Dist:")]


# ------------------------------------------------------------------------------ third-party wheels
def third_party_closure(roots: list[Requirement], ours: set[str]) -> dict[str, md.Distribution]:
    """The main venv's distributions that ``roots`` (runtime requirements, no extras) need."""
    found: dict[str, md.Distribution] = {}
    todo = [r for r in roots if r.marker is None or r.marker.evaluate({"extra": ""})]
    while todo:
        name = canonicalize_name(todo.pop().name)
        if name in ours or name in found:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise AssertionError(f"{name} is needed by our wheels but not installed in the main venv "
                                 "(run make install)") from None
        found[name] = dist
        todo += [r for r in map(Requirement, dist.requires or [])
                 if r.marker is None or r.marker.evaluate({"extra": ""})]
    return found


def repack(dist: md.Distribution, out: Path) -> Path:
    """A wheel of an installed distribution, from the files its RECORD lists under
    site-packages (the scripts pip wrote in bin/ are made again from its entry points)."""
    info = Path(dist._path)  # the .dist-info directory
    wheel_file = info / "WHEEL"
    if not wheel_file.exists() or dist.files is None or (info / "direct_url.json").exists():
        raise AssertionError(f"{dist.metadata['Name']} in the main venv was not installed from a wheel "
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
        raise AssertionError(f"pip wheel {' '.join(s.name for s in sources)} failed:\n{proc.stdout}{proc.stderr}")


@dataclass(frozen=True)
class Wheelhouse:
    ours: Path          #: a wheel per distribution of the tree, and the meta-distribution's
    third_party: Path   #: what they need, repacked from the main venv
    names: frozenset[str]  #: canonical names of our wheels

    def find_links(self) -> list[str]:
        return ["--find-links", str(self.ours), "--find-links", str(self.third_party)]


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Wheelhouse:
    tmp = tmp_path_factory.mktemp("wheelhouse")
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
    # one pip per CPU, each building its share (a pip start-up is a good part of a build)
    shares = max(1, min(os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(shares) as pool:
        list(pool.map(lambda i: pip_wheel(sources[i::shares], ours), range(shares)))
    wheels = sorted(ours.glob("*.whl"))
    assert len(wheels) == len(sources), f"built {[w.name for w in wheels]} from {len(sources)} projects"
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
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True, timeout=120)
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

    def install(self, wheelhouse: Wheelhouse, *requirements: str) -> dict[str, str]:
        """``pip install --no-index`` from the wheelhouse; returns {canonical name: wheel file}
        of what pip installed, having checked that our distributions came from our wheels."""
        report = self.path / "install-report.json"
        proc = subprocess.run([sys.executable, "-m", "pip", "--python", self.bin("python"), "install", "--isolated",
                               "--disable-pip-version-check", "--no-index", *wheelhouse.find_links(),
                               "--report", str(report), "-q", *requirements],
                              capture_output=True, text=True, timeout=300, cwd=self.path)
        assert proc.returncode == 0, f"pip install {' '.join(requirements)} failed:\n{proc.stdout}{proc.stderr}"
        installed = {}
        for item in json.loads(report.read_text())["install"]:
            name = canonicalize_name(item["metadata"]["name"])
            installed[name] = url = item["download_info"]["url"]
            if name in wheelhouse.names:
                assert url.startswith(wheelhouse.ours.as_uri() + "/"), f"{name} came from {url}"
        return installed

    def dockyard_distributions(self) -> set[str]:
        """Canonical names of the dockyard distributions the venv's own interpreter sees."""
        out = subprocess.run([self.bin("python"), "-c", "import importlib.metadata as m\n"
                              "print('\\n'.join(d.metadata['Name'] for d in m.distributions()))"],
                             capture_output=True, text=True, check=True, env=self.env, cwd=self.path, timeout=60)
        return {canonicalize_name(n) for n in out.stdout.split() if canonicalize_name(n).startswith("dockyard")}

    def start_daemon(self, root: Path, owners: Owners, *extra: str) -> Daemon:
        """This venv's ``dockyardd`` on private roots under ``root`` (the SDK's layout: data
        ``root/data``, exec root, socket and pidfile in ``root/run``), answering ``/_ping``."""
        root.mkdir(parents=True, exist_ok=True)
        owners.record_data_root(root / "data", root)
        args = [self.bin("dockyardd"), "--data-root", str(root / "data"), "--exec-root", str(root / "run"),
                "-H", f"unix://{root / 'run' / 'dockyard.sock'}", "--pidfile", str(root / "run" / "dockyardd.pid"),
                *extra]
        log = root / "daemon.log"
        with open(log, "ab") as fh:
            proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT, env=self.env, cwd=root,
                                    start_new_session=True)
        daemon = Daemon(root=root, proc=proc, args=args)
        wait_for_socket(daemon.socket, proc, log)
        return daemon

    def dockyard(self, daemon: Daemon, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """This venv's own ``dockyard`` CLI against ``daemon``."""
        res = subprocess.run([self.bin("dockyard"), "-H", daemon.host, *args], capture_output=True, text=True,
                             env=self.env, cwd=self.path, timeout=120)
        if check and res.returncode != 0:
            raise AssertionError(f"dockyard {' '.join(args)} exited {res.returncode}:\n{res.stderr}\n"
                                 f"daemon log:\n{daemon.log[-3000:]}")
        return res
