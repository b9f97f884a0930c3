"""Every ``dockyard.*`` entry point of every installed distribution loads: drivers through
``Registry.load_driver``, feature plugins by registering cleanly on a fresh kernel, CLI groups
as click commands that answer ``--help`` (with every subcommand)."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from dockyard.config import Config
from dockyard.kernel import Kernel
from dockyard.registry import CLI_GROUP, PLUGIN_GROUP, PluginRecord, Registry
from dockyard.specs import NAMESPACES, PROVIDER_GROUP, DriverProvider, conventional_distribution


def scanned() -> Registry:
    registry = Registry(environ={})
    registry.scan()
    return registry


RECORDS = scanned().records


def ids(records: list[PluginRecord]) -> list[str]:
    return [f"{r.group.removeprefix('dockyard.')}:{r.name}({r.distribution})" for r in records]


DRIVERS = [r for r in RECORDS if r.kind in NAMESPACES]
PLUGINS = [r for r in RECORDS if r.group == PLUGIN_GROUP]
CLIS = [r for r in RECORDS if r.group == CLI_GROUP]
PROVIDERS = [r for r in RECORDS if r.group == PROVIDER_GROUP]


def test_no_name_is_claimed_twice() -> None:
    conflicts = [str(p) for p in scanned().problems]
    assert not conflicts, "\n".join(conflicts)


@pytest.mark.parametrize("record", DRIVERS, ids=ids(DRIVERS))
def test_driver_loads(record: PluginRecord) -> None:
    registry = scanned()
    cls = registry.load_driver(record.kind, record.name)
    assert cls.info.name == record.name and cls.info.kind == record.kind
    assert registry.find(record.group, record.name)[0].status == "loaded"


@pytest.mark.parametrize("record", PLUGINS, ids=ids(PLUGINS))
async def test_plugin_registers_on_a_fresh_kernel(tmp_path: Path, record: PluginRecord) -> None:
    assert record.entry_point is not None
    obj = record.entry_point.load()
    kernel = Kernel.build(Config.load(overrides={"data-root": str(tmp_path), "exec-root": str(tmp_path)}),
                          plugins=[obj], autoload=False)
    try:
        assert kernel.pm.is_registered(obj)
        kernel.pm.check_pending()
    finally:
        await kernel.stop()


@pytest.mark.parametrize("record", PROVIDERS, ids=ids(PROVIDERS))
def test_provider_declaration_loads_and_agrees_with_the_installed_drivers(record: PluginRecord) -> None:
    assert record.entry_point is not None
    declared = list(record.entry_point.load())
    assert declared and all(isinstance(d, DriverProvider) for d in declared)
    for d in declared:
        installed = {r.distribution for r in DRIVERS if (r.kind, r.name) == (d.kind, d.name)}
        assert installed <= {d.distribution}, \
            f"{record.distribution} declares {d.kind}:{d.name} in {d.distribution}, installed from {installed}"


@pytest.mark.parametrize("record", DRIVERS, ids=ids(DRIVERS))
def test_an_uninstalled_driver_would_be_named_by_its_distribution(record: PluginRecord) -> None:
    """What DriverNotInstalled would say were this driver's distribution uninstalled: the
    declared provider, else ``dockyard-<area>-<name>``."""
    hint = scanned().declared_provider(record.kind, record.name) or conventional_distribution(record.kind, record.name)
    assert hint == record.distribution, \
        f"{record.kind}:{record.name} comes from {record.distribution}: declare it (dockyard.providers)"


@pytest.mark.parametrize("record", CLIS, ids=ids(CLIS))
def test_cli_group_loads_and_every_command_answers_help(record: PluginRecord) -> None:
    assert record.entry_point is not None
    group = record.entry_point.load()
    assert isinstance(group, click.Command), f"{record.target} is {type(group).__name__}, not a click command"
    runner = CliRunner()

    def walk(cmd: click.Command, path: list[str]) -> None:
        result = runner.invoke(group, [*path, "--help"], prog_name=f"dockyard {record.name}")
        assert result.exit_code == 0, f"dockyard {record.name} {' '.join(path)} --help: {result.output}"
        assert "Usage:" in result.output
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd)
            for sub in cmd.list_commands(ctx):
                walk(cmd.get_command(ctx, sub), [*path, sub])

    walk(group, [])


def test_the_tree_has_entry_points_of_each_sort() -> None:
    assert CLIS, "no dockyard.cli entry point installed (the SDK's `plugin` group at least)"
    assert DRIVERS, "no driver installed"
