"""Cross-area needs through core: a plugin provides an implementation of an interface, the
kernel hands it to every driver's context, and a driver that needs a missing one is told
what is missing."""

from __future__ import annotations

import abc
from pathlib import Path

import pytest

from dockyard.config import Config
from dockyard.errors import PluginConflictError, PluginError, Unavailable
from dockyard.kernel import Kernel
from dockyard.specs import DriverContext, Provided, hookimpl


class Installer(abc.ABC):
    @abc.abstractmethod
    def install(self, where: str) -> str: ...


class Ssh(Installer):
    def install(self, where: str) -> str:
        return f"installed on {where}"


class SshPlugin:
    @hookimpl
    def dockyard_provides(self, kernel):
        return [Provided(Installer, Ssh(), "ssh")]


class OtherPlugin:
    @hookimpl
    def dockyard_provides(self, kernel):
        return [Provided(Installer, Ssh(), "other")]


def kernel(tmp_path: Path, *plugins: object) -> Kernel:
    cfg = Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run")})
    return Kernel.build(cfg, plugins=plugins, autoload=False, environ={})


def test_a_provided_implementation_reaches_the_driver_context(tmp_path: Path) -> None:
    k = kernel(tmp_path, SshPlugin())
    ctx = DriverContext(data_dir=tmp_path, run_dir=tmp_path, owner="dy000000", provided=k.provided())
    assert ctx.need(Installer).install("vm1") == "installed on vm1"


def test_a_missing_implementation_names_the_interface_and_why(tmp_path: Path) -> None:
    ctx = DriverContext(data_dir=tmp_path, run_dir=tmp_path, owner="dy000000", provided=kernel(tmp_path).provided())
    with pytest.raises(Unavailable, match=r"no installed plugin provides .*Installer: pip install something"):
        ctx.need(Installer, "pip install something")


def test_two_providers_of_one_interface_are_a_recorded_conflict(tmp_path: Path) -> None:
    k = kernel(tmp_path, SshPlugin(), OtherPlugin())
    assert Installer not in k.provided()
    [err] = [p for p in k.registry.problems if isinstance(p, PluginConflictError)]
    assert "ssh" in str(err) and "other" in str(err)


def test_a_provided_object_must_implement_the_interface() -> None:
    with pytest.raises(TypeError, match="is not an implementation of Installer"):
        Provided(Installer, object(), "bad")


def test_a_hook_returning_something_else_is_an_error(tmp_path: Path) -> None:
    class Bad:
        @hookimpl
        def dockyard_provides(self, kernel):
            return ["not a Provided"]

    with pytest.raises(PluginError, match="not a dockyard.specs.Provided"):
        kernel(tmp_path, Bad()).provided()
