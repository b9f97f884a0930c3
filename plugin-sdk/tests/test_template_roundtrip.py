"""A third-party driver made by `dockyard plugin new`: installed into the running venv, found by
a fresh registry, loaded and set up by a fresh kernel, passing its own generated tests, and gone
after `pip uninstall` (asking for it then names the distribution to install)."""

from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from dockyard.config import Config
from dockyard.errors import DriverNotInstalled
from dockyard.kernel import Kernel
from dockyard.registry import Registry
from dockyard.specs import DRIVER_BASES, NAMESPACES, entry_point_group
from dockyard_plugin_sdk.cli import plugin_group, templated_kinds


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=300)


def installed(distribution: str) -> bool:
    try:
        md.distribution(distribution)
    except md.PackageNotFoundError:
        return False
    return True


def fresh_kernel(root: Path) -> Kernel:
    return Kernel.build(Config.load(overrides={"data-root": str(root / "data"),
                                               "exec-root": str(root / "run")}), autoload=False)


@pytest.mark.parametrize("kind", templated_kinds())
async def test_generated_driver_installs_loads_passes_and_uninstalls(tmp_path: Path, kind: str) -> None:
    name = "rt" + uuid.uuid4().hex[:8]
    area = NAMESPACES[kind][0]
    distribution = f"dockyard-{area}-{name}"
    package = f"dockyard_{area}_{name}"
    result = CliRunner().invoke(plugin_group, ["new", kind, name, "--dest", str(tmp_path)])
    assert result.exit_code == 0, result.output
    project = tmp_path / distribution
    assert not installed(distribution)

    proc = pip("install", "--no-deps", "--no-build-isolation", "-q", str(project))
    try:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert installed(distribution)

        registry = Registry(environ={})
        registry.scan()
        [record] = registry.find(entry_point_group(kind), name)
        assert (record.distribution, record.version, record.status) == (distribution, "0.1.0", "available")
        assert record.target == f"{package}.driver:{record.target.split(':')[1]}"
        assert name in registry.driver_names(kind)

        kernel = fresh_kernel(tmp_path)
        try:
            driver = await kernel.driver_ready(kind, name)
            assert isinstance(driver, DRIVER_BASES[kind])
            assert type(driver).__module__ == f"{package}.driver"
            assert driver.info.name == name and driver.info.kind == kind
            assert driver.context.data_dir == tmp_path / "data" / kind / name
            assert driver.context.data_dir.is_dir()
            assert registry.find(entry_point_group(kind), name)[0].status == "available"  # other registry
            assert kernel.registry.find(entry_point_group(kind), name)[0].status == "loaded"
        finally:
            await kernel.stop()

        tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "tests"],
                               cwd=project, capture_output=True, text=True, timeout=300)
        assert tests.returncode == 0, tests.stdout + tests.stderr
        summary = tests.stdout.strip().splitlines()[-1]
        assert " passed" in summary and "failed" not in summary and "error" not in summary, summary
        skips = [line for line in tests.stdout.splitlines() if line.startswith("SKIPPED")]
        assert all("does not declare capability" in line for line in skips), \
            "the generated project skips kit cases for another reason than a capability:\n" + "\n".join(skips)
    finally:
        removed = pip("uninstall", "-y", distribution)
        for mod in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
            del sys.modules[mod]
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert not installed(distribution)

    registry = Registry(environ={})
    registry.scan()
    assert registry.find(entry_point_group(kind), name) == []
    kernel = fresh_kernel(tmp_path / "after")
    try:
        with pytest.raises(DriverNotInstalled) as exc:
            await kernel.driver_ready(kind, name)
    finally:
        await kernel.stop()
    assert exc.value.distribution == distribution
    assert f"pip install {distribution}" in str(exc.value)
