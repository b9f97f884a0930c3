"""`dockyard plugin` (the SDK's click group), exercised through click's runner."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from dockyard.specs import NAMESPACES
from dockyard_plugin_sdk import cli
from dockyard_plugin_sdk.cli import plugin_group, render, templated_kinds

RUFF = Path(sys.executable).parent / "ruff"


def invoke(*args: str):
    return CliRunner().invoke(plugin_group, list(args), catch_exceptions=False)


def test_registered_as_the_plugin_cli_group() -> None:
    eps = [ep for ep in md.distribution("dockyard-plugin-sdk").entry_points if ep.group == "dockyard.cli"]
    assert [(ep.name, ep.value) for ep in eps] == [("plugin", "dockyard_plugin_sdk.cli:plugin_group")]
    assert eps[0].load() is plugin_group


@pytest.mark.parametrize("args", [[], ["new"], ["kinds"]])
def test_every_command_answers_help(args: list[str]) -> None:
    result = invoke(*args, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_templated_kinds_are_real_driver_kinds() -> None:
    kinds = templated_kinds()
    assert {"provision", "cluster"} <= set(kinds)
    assert set(kinds) <= set(NAMESPACES)
    assert invoke("kinds").output.split() == kinds


def test_new_writes_the_project(tmp_path: Path) -> None:
    result = invoke("new", "provision", "mybox", "--dest", str(tmp_path))
    assert result.exit_code == 0, result.output
    root = tmp_path / "dockyard-provision-mybox"
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", "src/dockyard_provision_mybox/__init__.py",
                     "src/dockyard_provision_mybox/driver.py", "tests/test_conformance.py"]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["name"] == "dockyard-provision-mybox"
    assert project["dependencies"] == ["dockyard-core>=0.1,<0.2"]
    assert project["entry-points"]["dockyard.drivers.provision"] == {
        "mybox": "dockyard_provision_mybox.driver:MyboxProvisioner"}
    assert "class TestMyboxProvisioner(ProvisionerContract)" in (root / "tests/test_conformance.py").read_text()


def test_exact_path_option(tmp_path: Path) -> None:
    result = invoke("new", "cluster", "file_store", "--path", str(tmp_path / "drivers/cluster/file_store"))
    assert result.exit_code == 0, result.output
    driver = tmp_path / "drivers/cluster/file_store/src/dockyard_cluster_file_store/driver.py"
    assert "class FileStoreClusterStore(ClusterStore)" in driver.read_text()


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    assert invoke("new", "cluster", "twice", "--dest", str(tmp_path)).exit_code == 0
    marker = tmp_path / "dockyard-cluster-twice" / "README.md"
    marker.write_text("mine")
    result = invoke("new", "cluster", "twice", "--dest", str(tmp_path))
    assert result.exit_code != 0 and "already exists" in result.output
    assert marker.read_text() == "mine"


@pytest.mark.parametrize(("area", "name", "why"), [
    ("provision", "My-Box", "invalid driver name"),
    ("provision", "1box", "invalid driver name"),
    ("provision", "class", "invalid driver name"),
    ("provision", "box_", "invalid driver name"),
    ("provision", "b" * 41, "invalid driver name"),
    ("provision", "bö", "invalid driver name"),
    ("nosuch", "box", "no template for driver kind 'nosuch'"),
])
def test_rejects_bad_area_or_name(tmp_path: Path, area: str, name: str, why: str) -> None:
    result = invoke("new", area, name, "--dest", str(tmp_path))
    assert result.exit_code == 2 and why in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", templated_kinds())
def test_every_template_renders_clean_python(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "proj"
    written = render(kind, "sample", target)
    assert (Path("src") / f"dockyard_{NAMESPACES[kind][0]}_sample" / "driver.py") in written
    for rel in written:
        text = (target / rel).read_text()
        assert "$" not in text.replace("$$", ""), f"unrendered placeholder in {rel}"
        if rel.suffix == ".py":
            compile(text, str(rel), "exec")
    if RUFF.exists():
        proc = subprocess.run([str(RUFF), "check", "--no-cache", "--line-length", "110",
                               "--select", "E,F,W,I,B,UP", str(target)],
                              capture_output=True, text=True, cwd=target)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_template_dirs_match_the_kind_table() -> None:
    dirs = {p.name for p in cli.TEMPLATES.iterdir() if p.is_dir() and not p.name.startswith("_")}
    assert dirs == set(cli.KINDS), "a template directory without a KINDS row, or the reverse"


def test_the_root_cli_reaches_the_group(tmp_path: Path) -> None:
    """`dockyard plugin new` through the installed root command (it loads `dockyard.cli` lazily)."""
    dockyard = Path(sys.executable).parent / "dockyard"
    if not dockyard.exists():
        pytest.skip("the root `dockyard` command is not installed in this environment")
    proc = subprocess.run([str(dockyard), "plugin", "new", "cluster", "viaroot", "--dest", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (tmp_path / "dockyard-cluster-viaroot" / "src" / "dockyard_cluster_viaroot" / "driver.py").is_file()
