"""The core never imports a driver or plugin: importing every module of the ``dockyard``
package leaves no ``dockyard_*`` module in ``sys.modules``, and no source file of core/src
names one in an import statement or an ``import_module`` call."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CORE_SRC = ROOT / "core" / "src"
PACKAGE = CORE_SRC / "dockyard"
FOREIGN = "dockyard_"  # every driver and plugin package: dockyard_<area>_<name>, dockyard_plugin_sdk...


def core_modules() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(CORE_SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if parts[-1] == "__main__":
            continue
        out.append(".".join(parts))
    return out


PROBE = """
import importlib, json, sys, traceback
failed = {}
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except BaseException as exc:  # noqa: BLE001
        failed[name] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
foreign = sorted(m for m in sys.modules if m.startswith(PREFIX))
print(json.dumps({"failed": failed, "foreign": foreign, "loaded": sorted(sys.modules)}))
""".replace("PREFIX", repr(FOREIGN))


def test_walk_finds_the_core() -> None:
    mods = core_modules()
    assert {"dockyard", "dockyard.kernel", "dockyard.registry", "dockyard.specs.storage"} <= set(mods)


def test_importing_all_of_core_imports_no_driver_or_plugin() -> None:
    mods = core_modules()
    proc = subprocess.run([sys.executable, "-c", PROBE, json.dumps(mods)], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(mods) <= set(report["loaded"]) | set(report["failed"])
    assert not report["foreign"], f"importing the core pulled in driver/plugin modules: {report['foreign']}"
    assert not report["failed"], "core modules that fail to import:\n" + "\n".join(
        f"  {m}: {e}" for m, e in report["failed"].items())


def foreign_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    hits = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if called in ("import_module", "__import__") and isinstance(node.args[0].value, str):
                names = [node.args[0].value]
        hits += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n.startswith(FOREIGN)]
    return hits


def test_no_core_source_imports_a_driver_or_plugin() -> None:
    hits = [h for path in sorted(PACKAGE.rglob("*.py")) for h in foreign_imports(path)]
    assert not hits, "core imports driver/plugin packages:\n" + "\n".join(hits)


def test_the_scan_catches_each_form(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    bad = tmp_path / "bad.py"
    bad.write_text("import dockyard_storage_vfs\nfrom dockyard_network_bridge.driver import X\n"
                   "import importlib\nimportlib.import_module('dockyard_arch_linux')\n"
                   "from dockyard.specs import hookimpl\nimport dockyard\n")
    assert [h.rsplit(": ", 1)[1] for h in foreign_imports(bad)] == [
        "dockyard_storage_vfs", "dockyard_network_bridge.driver", "dockyard_arch_linux"]


def _own_packages(dist: Path) -> set[str]:
    return {p.name for p in (dist / "src").iterdir() if p.is_dir() and (p / "__init__.py").exists()}


def _imported_modules(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
              and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            out.add(node.args[0].value.split(".")[0])
    return out


def test_no_distribution_imports_a_sibling() -> None:
    """A distribution's code depends on dockyard-core only (DESIGN: cross-area needs go
    through core): no driver or plugin imports another driver or plugin, so each installs,
    uninstalls and is replaced alone."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        from distributions import distributions
    finally:
        sys.path.pop(0)
    offenders = []
    for dist in distributions():
        if dist.name == "core" or not (dist / "src").is_dir():
            continue
        own = _own_packages(dist)
        for path in sorted((dist / "src").rglob("*.py")):
            if "templates" in path.parts:
                continue
            foreign = {m for m in _imported_modules(path) if m.startswith(FOREIGN) and m not in own}
            if foreign:
                offenders.append(f"{path.relative_to(ROOT)}: {', '.join(sorted(foreign))}")
    assert not offenders, "distributions importing a sibling:\n" + "\n".join(offenders)
