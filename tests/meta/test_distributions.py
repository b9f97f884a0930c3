"""Each distribution of the tree (``tools/distributions.py``) stands alone: a version, README.md,
``src/``, ``tests/``; depends on ``dockyard-core`` with a range and on third-party libraries,
never on a sibling; and builds a wheel by itself from a copy of its own directory."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"_tools_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DISTS: list[Path] = load_tool("distributions").distributions()
IDS = [d.relative_to(ROOT).as_posix() for d in DISTS]
#: Test-only extras may name the SDK (it carries the conformance kits); nothing else of ours.
TEST_EXTRA_ALLOWED = {"dockyard-plugin-sdk"}


def project(d: Path) -> dict:
    return tomllib.loads((d / "pyproject.toml").read_text())["project"]


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


SIBLINGS = {norm(project(d)["name"]) for d in DISTS} | {"dockyard"}


def test_the_tree_lists_its_distributions() -> None:
    assert {"core", "plugin-sdk"} <= set(IDS)
    names = [norm(project(d)["name"]) for d in DISTS]
    assert len(names) == len(set(names)), f"two directories build one distribution: {names}"


@pytest.mark.parametrize("d", DISTS, ids=IDS)
def test_layout(d: Path) -> None:
    proj = project(d)
    missing = [p for p in ("README.md", "src", "tests") if not (d / p).exists()]
    assert not missing, f"{d.relative_to(ROOT)} lacks {', '.join(missing)}"
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", str(proj.get("version", ""))), "needs a static version"
    assert proj.get("readme") == "README.md"
    assert norm(proj["name"]).startswith("dockyard-")


@pytest.mark.parametrize("d", DISTS, ids=IDS)
def test_depends_on_core_with_a_range_and_never_on_a_sibling(d: Path) -> None:
    proj = project(d)
    name = norm(proj["name"])
    reqs = [Requirement(r) for r in proj.get("dependencies", [])]
    ours = [r for r in reqs if norm(r.name) in SIBLINGS]
    if name == "dockyard-core":
        assert not ours, f"dockyard-core depends on {[str(r) for r in ours]}"
    else:
        assert [norm(r.name) for r in ours] == ["dockyard-core"], \
            f"{name} runtime dependencies on dockyard distributions: {[str(r) for r in ours]} (only dockyard-core)"
        ops = {s.operator for s in ours[0].specifier}
        assert ops & {">=", "~=", "=="} and (ops & {"<", "~=", "=="}), \
            f"{name}: dockyard-core needs a bounded range, got {ours[0]}"
    for extra, items in proj.get("optional-dependencies", {}).items():
        bad = [r for r in map(Requirement, items)
               if norm(r.name) in SIBLINGS and norm(r.name) not in TEST_EXTRA_ALLOWED | {"dockyard-core"}]
        assert not bad, f"{name}[{extra}] names sibling distributions: {[str(r) for r in bad]}"


def _build(d: Path, tmp: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Build a wheel from a copy of ``d`` alone (no build/ or egg-info leftovers)."""
    src = tmp / "src" / d.name
    shutil.copytree(d, src, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__",
                                                          ".pytest_cache", ".tox"))
    out = tmp / "wheel" / d.name
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--disable-pip-version-check",
                           "--no-deps", "--no-build-isolation", "-w", str(out), str(src)],
                          capture_output=True, text=True, timeout=300)
    return proc, out


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, tuple[subprocess.CompletedProcess[str], Path]]:
    tmp = tmp_path_factory.mktemp("wheels")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {d: pool.submit(_build, d, tmp / str(i)) for i, d in enumerate(DISTS)}
        return {d: f.result() for d, f in futures.items()}


@pytest.mark.parametrize("d", DISTS, ids=IDS)
def test_builds_a_wheel_alone(d: Path, wheels) -> None:
    proc, out = wheels[d]
    assert proc.returncode == 0, f"pip wheel {d.relative_to(ROOT)} failed:\n{proc.stdout}{proc.stderr}"
    proj = project(d)
    built = list(out.glob("*.whl"))
    stem = f"{norm(proj['name']).replace('-', '_')}-{proj['version']}-"
    assert len(built) == 1 and built[0].name.startswith(stem), [w.name for w in built]
    with zipfile.ZipFile(built[0]) as whl:
        names = whl.namelist()
        packages = {n.split("/")[0] for n in names if n.endswith(".py")}
        assert packages, "the wheel holds no Python package"
        metadata = whl.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [Requirement(line.split(":", 1)[1].strip()) for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")]
    runtime = [r for r in requires if r.marker is None or "extra" not in str(r.marker)]
    assert {norm(r.name) for r in runtime} & SIBLINGS <= ({"dockyard-core"} if norm(proj["name"]) != "dockyard-core"
                                                          else set())
