"""``dockyard plugins list|show``: local inspection of installed plugins (no daemon needed)."""

from __future__ import annotations

from typing import Any

import click

from dockyard.cli.output import FORMAT_OPTION, print_json, print_table


def _scan() -> Any:
    from dockyard.config import Config
    from dockyard.daemon import DEFAULT_CONFIG_FILE
    from dockyard.kernel import Kernel

    try:
        config = Config.load(DEFAULT_CONFIG_FILE)
    except Exception:  # noqa: BLE001 - a broken config must not hide the plugin list
        config = Config()
    kernel = Kernel.build(config)  # registers feature plugins, recording failures
    kernel.registry.check_all_drivers()  # imports every driver, recording failures
    return kernel.registry


def _record(r: Any) -> dict[str, str]:
    return {"name": r.name, "area": r.area, "kind": r.kind, "version": r.version,
            "distribution": r.distribution, "status": r.status, "error": r.error, "target": r.target}


@click.group()
def plugins() -> None:
    """Inspect installed plugins and drivers."""


@plugins.command("list")
@FORMAT_OPTION
@click.option("--area", help="only this area (arch, storage, network, cluster, provision, feature, cli)")
def list_(fmt: str, area: str | None) -> None:
    """Every installed plugin: area, kind, version, distribution, and why it failed to load."""
    records = [r for r in _scan().records if area is None or r.area == area]
    if fmt == "json":
        print_json([_record(r) for r in records])
        return
    print_table(["NAME", "AREA", "KIND", "VERSION", "DISTRIBUTION", "STATUS", "ERROR"],
                [[r.name, r.area, r.kind, r.version, r.distribution, r.status, r.error] for r in records])


@plugins.command("show")
@FORMAT_OPTION
@click.argument("name")
def show(fmt: str, name: str) -> None:
    """Details of plugin NAME (entry-point name, `kind:name` or distribution)."""
    matches = [r for r in _scan().records if name in (r.name, f"{r.kind}:{r.name}", r.distribution)]
    if not matches:
        raise click.ClickException(f"no installed plugin named {name!r}; see `dockyard plugins list`")
    if fmt == "json":
        print_json([_record(r) for r in matches])
        return
    for r in matches:
        for key, value in _record(r).items():
            click.echo(f"{key + ':':14}{value}")
        click.echo("")
