"""Each distribution of the tree (``tools/distributions.py``) stands alone: a version, README.md,
``src/``, ``tests/``; depends on ``dockyard-core`` with a range and on third-party libraries,
never on a sibling; declares what its tests need in a ``test`` extra (siblings allowed there
only: a test about composition may need the engine); builds a wheel by itself from a copy of its
own directory; and ``tools/test_alone.py`` (which runs its tests alone, in CI) has an env for it
holding exactly what it declares."""

from __future__ import annotations

import importlib.util
import os
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
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


DISTS: list[Path] = load_tool("distributions").distributions()
TEST_EXTRA = "test"
IDS = [d.relative_to(ROOT).as_posix() for d in DISTS]
#: Other extras may name the SDK (it carries the conformance kits); nothing else of ours. The
#: ``test`` extra may name any sibling: installing it is for running the tests, not for users.
EXTRA_ALLOWED = {"dockyard-plugin-sdk"}
#: What every ``test`` extra names: the runner, and the SDK's pytest plugin for the leak check
#: (``--dockyard-leak-check``) and the fixtures; ``timeout`` in the configuration is pytest-timeout's.
TEST_NEEDS = {"pytest", "pytest-asyncio", "pytest-timeout", "dockyard-plugin-sdk"}


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
        if extra == "test":
            continue
        bad = [r for r in map(Requirement, items)
               if norm(r.name) in SIBLINGS and norm(r.name) not in EXTRA_ALLOWED | {"dockyard-core"}]
        assert not bad, f"{name}[{extra}] names sibling distributions: {[str(r) for r in bad]}"


@pytest.mark.parametrize("d", DISTS, ids=IDS)
def test_declares_its_test_dependencies(d: Path) -> None:
    proj = project(d)
    test = [Requirement(r) for r in proj.get("optional-dependencies", {}).get("test", [])]
    assert test, (f"{d.relative_to(ROOT)} has no `test` extra: list what its tests need under "
                  "[project.optional-dependencies] test = [...] (tools/test_alone.py installs it)")
    named = {norm(r.name) for r in test} | {norm(r.name) for r in map(Requirement, proj.get("dependencies", []))}
    missing = TEST_NEEDS - named - {norm(proj["name"])}
    assert not missing, f"{proj['name']}[test] lacks {', '.join(sorted(missing))}"
    for r in test:
        if norm(r.name) in SIBLINGS - {norm(proj["name"])}:
            ops = {s.operator for s in r.specifier}
            assert ">=" in ops and "<" in ops, f"{proj['name']}[test]: {r} needs a range like >=0.1,<0.2"


def test_the_runner_has_one_env_per_distribution_holding_what_it_declares() -> None:
    """The runner's env list (generated from tools/distributions.py) is current: an env per
    distribution, in order, holding the distribution and exactly the siblings its requirements
    (with its test extra, and theirs, transitively) name; ``--list`` prints it."""
    alone = load_tool("test_alone")
    envs = alone.envs()
    assert [ROOT / e.directory for e in envs] == DISTS
    assert len({e.name for e in envs}) == len(envs)
    by_name = {norm(project(d)["name"]): d.relative_to(ROOT) for d in DISTS} | {"dockyard": Path(".")}
    for e in envs:
        extras = dict(e.extras)
        assert e.members[0] == e.directory and TEST_EXTRA in extras[e.project]
        named = set()
        for m in e.members:
            proj = project(ROOT / m)
            reqs = proj.get("dependencies", []) + [r for x in extras.get(norm(proj["name"]), ())
                                                   for r in proj.get("optional-dependencies", {}).get(x, [])]
            named |= {by_name[norm(r.name)] for r in map(Requirement, reqs) if norm(r.name) in by_name}
        assert set(e.members) == named | {e.directory}, f"{e.name} installs {e.members}, its requirements name {named}"
    listed = subprocess.run([sys.executable, str(ROOT / "tools" / "test_alone.py"), "--list"], capture_output=True,
                            text=True, timeout=60, check=True).stdout.split("\n")
    assert [line.split()[0] for line in listed if line] == [e.name for e in envs]


def _copy(d: Path, tmp: Path) -> Path:
    """A copy of ``d`` alone (no build/ or egg-info leftovers, no siblings next to it)."""
    src = tmp / "src" / d.relative_to(ROOT).as_posix().replace("/", "__")
    shutil.copytree(d, src, ignore=shutil.ignore_patterns("build", "dist", "*.egg-info", "__pycache__",
                                                          ".pytest_cache", ".tox"))
    return src


def _pip_wheel(sources: list[Path], out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "wheel", "--disable-pip-version-check",
                           "--no-deps", "--no-build-isolation", "-w", str(out), *map(str, sources)],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, tuple[str, Path]]:
    """Build every distribution's wheel: one ``pip wheel`` per CPU, each over a share of the copies
    (pip starts once per share; each project is still built by itself from its own copy). When a
    share fails, its projects are rebuilt one per pip run so the failure names the right one."""
    tmp = tmp_path_factory.mktemp("wheels")
    copies = {d: _copy(d, tmp) for d in DISTS}
    shares = max(1, min(os.cpu_count() or 1, 4))
    chunks = [DISTS[i::shares] for i in range(shares)]
    with ThreadPoolExecutor(max_workers=shares) as pool:
        procs = list(pool.map(lambda i: _pip_wheel([copies[d] for d in chunks[i]], tmp / f"out{i}"),
                              range(shares)))
    out = {}
    for i, chunk in enumerate(chunks):
        for d in chunk:
            out[d] = (procs[i].stdout + procs[i].stderr, tmp / f"out{i}")
        if procs[i].returncode != 0:  # one bad project stops pip: rebuild this share one by one
            for j, d in enumerate(chunk):
                alone = tmp / f"out{i}-{j}"
                proc = _pip_wheel([copies[d]], alone)
                out[d] = (proc.stdout + proc.stderr, alone)
    return out


@pytest.mark.parametrize("d", DISTS, ids=IDS)
def test_builds_a_wheel_alone(d: Path, wheels) -> None:
    log, out = wheels[d]
    proj = project(d)
    stem = f"{norm(proj['name']).replace('-', '_')}-{proj['version']}-"
    built = [w for w in out.glob("*.whl") if w.name.startswith(stem)]
    assert len(built) == 1, f"pip wheel {d.relative_to(ROOT)} made no {stem}*.whl:\n{log}"
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


def test_a_project_that_cannot_build_is_caught(tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    (bad / "src" / "dockyard_bad").mkdir(parents=True)
    (bad / "src" / "dockyard_bad" / "__init__.py").write_text("")
    (bad / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools>=68"]\n'
                                        'build-backend = "setuptools.build_meta"\n[project]\nname = "dockyard-bad"\n'
                                        'version = "0.1.0"\ndependencies = ["not a [valid requirement"]\n')
    proc = _pip_wheel([bad], tmp_path / "out")
    assert proc.returncode != 0 and not list((tmp_path / "out").glob("*.whl"))
