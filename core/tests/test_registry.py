"""Discovery, conflicts, loud load failures and selection policy, with real dist-info dirs."""

from __future__ import annotations

import pytest

from dockyard.config import Config
from dockyard.errors import DriverNotInstalled, PluginBlocked, PluginConflictError, PluginLoadError
from dockyard.kernel import Kernel
from dockyard.registry import Registry

STORAGE_DRIVER = """
from dockyard.specs import DriverInfo, LayerDriver

class {cls}(LayerDriver):
    info = DriverInfo("{name}", "storage", api_version={api})
    async def apply(self, key, parent, tar_path): raise NotImplementedError
    async def prepare(self, key, parent): raise NotImplementedError
    async def mount(self, key): return "/"
    async def unmount(self, key): pass
    async def diff(self, key, out_path): return 0
    async def remove(self, key): pass
    async def exists(self, key): return False
    async def list(self): return []
"""

FEATURE_PLUGIN = """
from dockyard.specs import hookimpl

seen = []

@hookimpl
def dockyard_event(kernel, event):
    seen.append(event.action)
"""


def storage_dist(make_dist, dist: str, mod: str, name: str = "toy", api: int = 1):
    return make_dist(dist, {"dockyard.drivers.storage": {name: f"{mod}:Toy"}},
                     {mod: STORAGE_DRIVER.format(cls="Toy", name=name, api=api)})


def registry() -> Registry:
    reg = Registry(environ={})
    reg.scan()
    return reg


def test_scan_reads_entry_points_with_their_distribution(make_dist):
    storage_dist(make_dist, "dockyard-storage-toy", "toy_a")
    rec = registry().find("dockyard.drivers.storage", "toy")[0]
    assert (rec.distribution, rec.version, rec.area, rec.kind) == ("dockyard-storage-toy", "1.0", "storage", "storage")


def test_driver_loads_through_stevedore(make_dist):
    storage_dist(make_dist, "dockyard-storage-toy", "toy_b")
    reg = registry()
    cls = reg.load_driver("storage", "toy")
    assert cls.info.name == "toy"
    assert reg.find("dockyard.drivers.storage", "toy")[0].status == "loaded"


def test_two_distributions_claiming_one_name_is_an_error_naming_both(make_dist):
    storage_dist(make_dist, "dockyard-storage-toy", "toy_c")
    storage_dist(make_dist, "acme-storage", "toy_d")
    reg = registry()
    assert any(isinstance(p, PluginConflictError) for p in reg.problems)
    with pytest.raises(PluginConflictError) as exc:
        reg.load_driver("storage", "toy")
    assert "dockyard-storage-toy 1.0" in str(exc.value) and "acme-storage 1.0" in str(exc.value)
    assert "toy" not in reg.driver_names("storage")


def test_missing_driver_says_which_distribution_to_install():
    with pytest.raises(DriverNotInstalled) as exc:
        registry().load_driver("storage", "zfs")
    assert "pip install dockyard-storage-zfs" in str(exc.value)
    with pytest.raises(DriverNotInstalled) as exc:
        registry().load_driver("volume", "local-not-here")
    assert "pip install dockyard-storage-local-not-here" in str(exc.value)


def test_driver_import_error_is_recorded_with_its_cause(make_dist):
    make_dist("dockyard-storage-broken", {"dockyard.drivers.storage": {"broken": "toy_broken:Toy"}},
              {"toy_broken": "import no_such_module_anywhere\n"})
    reg = registry()
    with pytest.raises(PluginLoadError) as exc:
        reg.load_driver("storage", "broken")
    assert "no_such_module_anywhere" in str(exc.value) and "dockyard-storage-broken" in str(exc.value)
    rec = reg.find("dockyard.drivers.storage", "broken")[0]
    assert rec.status == "failed" and "ModuleNotFoundError" in rec.error


@pytest.mark.parametrize("source, reason", [
    ("class Toy: pass\n", "is not a subclass"),
    (STORAGE_DRIVER.format(cls="Toy", name="other", api=1).replace('"storage"', '"volume"'), "info.kind"),
    (STORAGE_DRIVER.format(cls="Toy", name="wrongapi", api=99), "driver API 99"),
    ("from dockyard.specs import DriverInfo, LayerDriver\n"
     "class Toy(LayerDriver):\n    info = DriverInfo('half', 'storage')\n", "does not implement"),
])
def test_invalid_driver_classes_are_refused_with_the_reason(make_dist, source, reason):
    make_dist("dockyard-storage-bad", {"dockyard.drivers.storage": {"bad": "toy_bad:Toy"}}, {"toy_bad": source})
    with pytest.raises(PluginLoadError, match=reason):
        registry().load_driver("storage", "bad")


def test_feature_plugin_is_registered_and_sees_events(make_dist):
    make_dist("dockyard-feature-spy", {"dockyard.plugins": {"spy": "spy_plugin"}}, {"spy_plugin": FEATURE_PLUGIN})
    kernel = Kernel.build(Config(), environ={})
    assert kernel.pm.has_plugin("spy")
    kernel.emit("container", "create", "abc")
    import spy_plugin  # the module the entry point loaded

    assert spy_plugin.seen == ["create"]


@pytest.mark.parametrize("source, reason", [
    ("raise RuntimeError('boom at import')\n", "boom at import"),
    ("from dockyard.specs import hookimpl\n@hookimpl\ndef dockyard_no_such_hook(kernel):\n    pass\n",
     "match no specification: dockyard_no_such_hook"),
    ("from dockyard.specs import hookimpl\n@hookimpl\ndef dockyard_event(kernel, event, extra):\n    pass\n",
     "hook validation failed"),
    ("DOCKYARD_PLUGIN_API = 7\n", "plugin API 7"),
])
def test_broken_feature_plugins_are_reported_not_registered(make_dist, source, reason):
    make_dist("dockyard-feature-bad", {"dockyard.plugins": {"bad": "bad_plugin"}}, {"bad_plugin": source})
    kernel = Kernel.build(Config(), environ={})
    assert not kernel.pm.has_plugin("bad")
    rec = kernel.registry.find("dockyard.plugins", "bad")[0]
    assert rec.status == "failed" and reason in rec.error
    assert any(isinstance(p, PluginLoadError) and reason in str(p) for p in kernel.registry.problems)


def test_deny_blocks_plugins_and_drivers(make_dist):
    make_dist("dockyard-feature-spy", {"dockyard.plugins": {"spy": "spy_plugin2"}},
              {"spy_plugin2": FEATURE_PLUGIN})
    storage_dist(make_dist, "dockyard-storage-toy", "toy_e")
    kernel = Kernel.build(Config(values={"plugins": {"deny": ["spy", "storage:toy"]}}), environ={})
    assert not kernel.pm.has_plugin("spy")
    assert kernel.pm.is_blocked("spy")
    with pytest.raises(PluginBlocked):
        kernel.registry.load_driver("storage", "toy")


def test_environment_disables_and_allows(make_dist):
    make_dist("dockyard-feature-spy", {"dockyard.plugins": {"spy": "spy_plugin3"}},
              {"spy_plugin3": FEATURE_PLUGIN})
    assert not Kernel.build(Config(), environ={"DOCKYARD_DISABLE_PLUGINS": "spy"}).pm.has_plugin("spy")
    # an allow list admits only what it names (by entry-point or distribution name)
    assert not Kernel.build(Config(), environ={"DOCKYARD_LOAD_PLUGINS": "other"}).pm.has_plugin("spy")
    assert Kernel.build(Config(), environ={"DOCKYARD_LOAD_PLUGINS": "dockyard-feature-spy"}).pm.has_plugin("spy")


def test_environment_names_plugin_modules_no_distribution_declares(make_dist):
    """DOCKYARD_PLUGINS, as pytest's PYTEST_PLUGINS: a module registered after the entry points
    (a test's plugin in a daemon it starts), listed with where it came from; an allow list does
    not hide what is named explicitly, a deny does; nothing without autoload."""
    make_dist("unrelated", {}, {"named_spy": FEATURE_PLUGIN})
    kernel = Kernel.build(Config(), environ={"DOCKYARD_PLUGINS": "named_spy, named_spy"})
    assert kernel.pm.has_plugin("named_spy")
    [rec] = kernel.registry.find("dockyard.plugins", "named_spy")
    assert (rec.status, rec.distribution) == ("loaded", "DOCKYARD_PLUGINS")
    allow = {"DOCKYARD_PLUGINS": "named_spy", "DOCKYARD_LOAD_PLUGINS": "other"}
    assert Kernel.build(Config(), environ=allow).pm.has_plugin("named_spy")
    deny = {"DOCKYARD_PLUGINS": "named_spy", "DOCKYARD_DISABLE_PLUGINS": "named_spy"}
    assert not Kernel.build(Config(), environ=deny).pm.has_plugin("named_spy")
    assert not Kernel.build(Config(), autoload=False, environ={"DOCKYARD_PLUGINS": "named_spy"}).pm.has_plugin("named_spy")


def test_a_named_module_that_fails_or_clashes_is_reported(make_dist):
    kernel = Kernel.build(Config(), environ={"DOCKYARD_PLUGINS": "no_such_module_here"})
    [rec] = kernel.registry.find("dockyard.plugins", "no_such_module_here")
    assert rec.status == "failed" and "ModuleNotFoundError" in rec.error
    assert any(isinstance(p, PluginLoadError) and "DOCKYARD_PLUGINS" in str(p) for p in kernel.registry.problems)
    # a name an entry point has too: neither is used, both named
    make_dist("dockyard-feature-spy", {"dockyard.plugins": {"spy": "spy_plugin9"}},
              {"spy_plugin9": FEATURE_PLUGIN, "spy": FEATURE_PLUGIN})
    kernel = Kernel.build(Config(), environ={"DOCKYARD_PLUGINS": "spy"})
    assert not kernel.pm.has_plugin("spy")
    assert any(isinstance(p, PluginConflictError) and "DOCKYARD_PLUGINS" in str(p)
               and "dockyard-feature-spy" in str(p) for p in kernel.registry.problems)


def test_autoload_off_registers_only_explicit_plugins(make_dist):
    make_dist("dockyard-feature-spy", {"dockyard.plugins": {"spy": "spy_plugin4"}},
              {"spy_plugin4": FEATURE_PLUGIN})
    kernel = Kernel.build(Config(), autoload=False, environ={})
    assert not kernel.pm.has_plugin("spy")


# ---------------------------------------------------------------------- the CLI's cached scan
CLI_GROUP_SRC = """
import click

@click.command()
def hello():
    click.echo("hi")
"""


def cached(cache_dir) -> Registry:
    reg = Registry(environ={})
    reg.scan_cached(cache_dir)
    return reg


def test_cached_scan_reuses_its_file_until_a_distribution_changes(make_dist, tmp_path, monkeypatch):
    make_dist("dockyard-cli-hello", {"dockyard.cli": {"hello": "hello_cli:hello"}}, {"hello_cli": CLI_GROUP_SRC})
    cache = tmp_path / "cache"
    first = cached(cache)
    assert "hello" in first.cli_names()
    assert (cache / "entry-points.json").is_file()

    def no_scan(self):
        raise AssertionError("scanned although nothing changed")

    with monkeypatch.context() as m:
        m.setattr(Registry, "_read_records", no_scan)
        again = cached(cache)
    assert again.cli_names() == first.cli_names()
    assert again.load_cli("hello").name == "hello"  # imported from the cached "module:attr"

    # an install changes the key: the next lookup sees the new command
    make_dist("dockyard-cli-bye", {"dockyard.cli": {"bye": "bye_cli:hello"}}, {"bye_cli": CLI_GROUP_SRC})
    assert "bye" in cached(cache).cli_names()


def test_cached_scan_survives_a_corrupt_file(make_dist, tmp_path):
    make_dist("dockyard-cli-hello", {"dockyard.cli": {"hello": "hello_cli2:hello"}}, {"hello_cli2": CLI_GROUP_SRC})
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "entry-points.json").write_text("{not json")
    assert "hello" in cached(cache).cli_names()
    assert (cache / "entry-points.json").read_text().startswith("{\"key\"")


def test_a_driver_found_through_the_cache_still_loads_through_stevedore(make_dist, tmp_path):
    storage_dist(make_dist, "dockyard-storage-toy", "toy_cached")
    cache = tmp_path / "cache"
    cached(cache)
    reg = cached(cache)  # records without EntryPoint objects
    assert reg.load_driver("storage", "toy").info.name == "toy"
