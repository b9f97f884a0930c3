"""The Kernel: explicit plugins, driver selection, events and hook isolation."""

from __future__ import annotations

from pathlib import Path

import pytest

from dockyard.config import Config
from dockyard.errors import DriverNotInstalled, PluginError
from dockyard.kernel import Kernel
from dockyard.specs import ConfigOption, hookimpl
from dockyard.specs._base import AUTO_PRIORITY


class Recorder:
    def __init__(self) -> None:
        self.events: list[str] = []

    @hookimpl
    def dockyard_event(self, kernel, event):
        self.events.append(f"{event.type}.{event.action}")


class Exploder:
    @hookimpl
    def dockyard_event(self, kernel, event):
        raise RuntimeError("plugin bug")


class Options:
    @hookimpl
    def dockyard_config_options(self):
        return [ConfigOption("x-answer", int, 42)]


def kernel(tmp_path: Path, *plugins) -> Kernel:
    cfg = Config(values={"data-root": str(tmp_path / "data"), "exec-root": str(tmp_path / "run")})
    return Kernel.build(cfg, plugins=plugins, autoload=False, environ={})


def test_a_failing_event_hook_does_not_stop_the_others(tmp_path: Path):
    rec = Recorder()
    k = kernel(tmp_path, rec, Exploder())
    k.emit("container", "start", "abc", name="web")
    assert rec.events == ["container.start"]
    assert k.events.failures and "plugin bug" in k.events.failures[0].error
    assert k.events.past()[0].attributes == {"name": "web"}


def test_explicit_plugins_are_validated(tmp_path: Path):
    class Bad:
        @hookimpl
        def dockyard_nonsense(self):
            pass

    with pytest.raises(PluginError, match="dockyard_nonsense"):
        kernel(tmp_path, Bad())


def test_config_options_from_plugins_are_validated(tmp_path: Path):
    k = kernel(tmp_path, Options())
    k.config.values["x-answer"] = 7
    k.validate_config()
    k.config.values["x-question"] = 1
    with pytest.raises(Exception, match="x-question"):
        k.validate_config()


def test_selected_driver_comes_from_config(tmp_path: Path):
    k = kernel(tmp_path)
    k.config.values["storage-driver"] = "nonexistent"
    with pytest.raises(DriverNotInstalled, match="pip install dockyard-storage-nonexistent"):
        k.driver("storage")


async def test_start_and_stop_open_and_close_the_store(tmp_path: Path, fake_layer_drivers):
    k = kernel(tmp_path)
    k.config.values["storage-driver"] = "fake-fast"
    await k.start()
    assert k.store is not None and (tmp_path / "data" / "state.db").exists()
    ident = k.daemon_id
    assert k.daemon_id == ident  # stable
    assert ("storage", "fake-fast") in k.drivers
    await k.stop()
    assert k.store is None


def test_unconfigured_storage_prefers_overlay_then_vfs():
    assert AUTO_PRIORITY["storage"] == ("overlay", "vfs")


async def test_unconfigured_storage_falls_back_when_the_first_choice_is_not_installed(
        tmp_path: Path, fake_layer_drivers, monkeypatch: pytest.MonkeyPatch):
    # the fakes stand for overlay and vfs (the real ones are distributions of their own)
    monkeypatch.setitem(AUTO_PRIORITY, "storage", fake_layer_drivers)
    k = kernel(tmp_path)
    k.registry.deny.add("storage:fake-fast")  # what uninstalling it looks like to the registry
    k.registry.scan()
    await k.start()
    try:
        drv = await k.driver_ready("storage")  # what a service asking for the layer driver does
        assert k.selected_driver_name("storage") == drv.info.name == "fake-slow"
    finally:
        await k.stop()


async def test_a_configured_driver_is_never_replaced(tmp_path: Path, fake_layer_drivers):
    from dockyard.errors import PluginBlocked

    k = kernel(tmp_path)
    k.config.values["storage-driver"] = "fake-fast"
    k.registry.deny.add("storage:fake-fast")
    k.registry.scan()
    with pytest.raises(PluginBlocked):
        await k.start()
    await k.stop()


def test_only_a_key_no_plugin_declares_imports_the_drivers_settings(tmp_path: Path, make_dist):
    """A daemon imports the drivers it uses, not every installed one to read its settings
    (#21 item 10: ~1 MiB of RSS); a driver's key, an unknown key or a bad value still reads
    every driver's settings, with the errors as before."""
    import sys

    from dockyard.errors import InvalidArgument

    make_dist("acme-toy-options", {"dockyard.drivers.storage": {"toy": "acme_toy_options:Toy"}},
              {"acme_toy_options": TOY_DRIVER_WITH_SETTINGS})
    k = kernel(tmp_path, Options())
    k.config.values.update({"labels": ["a=1"], "x-answer": 7})
    k.validate_config()
    assert "acme_toy_options" not in sys.modules
    assert k.registry.find("dockyard.drivers.storage", "toy")[0].status == "available"
    k.config.values["toy-depth"] = "deep"
    with pytest.raises(InvalidArgument, match="'toy-depth': expected int, got str"):
        k.validate_config()
    assert "acme_toy_options" in sys.modules
    k.config.values["toy-depth"] = 3
    k.validate_config()
    k.config.values["toy-dpeth"] = 3
    with pytest.raises(InvalidArgument, match="unknown configuration option.*: toy-dpeth"):
        k.validate_config()
    assert "toy-depth" in {o.name for o in k.config_options()}  # without keys: every driver's


TOY_DRIVER_WITH_SETTINGS = """
from dockyard.specs import ConfigOption, DriverInfo, LayerDriver


class Toy(LayerDriver):
    info = DriverInfo("toy", "storage")
    config_options = (ConfigOption("toy-depth", int, 1, "a driver's setting"),)

    async def apply(self, key, parent, tar_path): raise NotImplementedError
    async def prepare(self, key, parent): raise NotImplementedError
    async def mount(self, key): raise NotImplementedError
    async def unmount(self, key): pass
    async def diff(self, key, out_path): raise NotImplementedError
    async def remove(self, key): pass
    async def exists(self, key): return False
    async def list(self): return []
"""
