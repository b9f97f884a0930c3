"""The root ``dockyard`` click group: built-in commands and plugin groups, all loaded lazily.

``dockyard --version`` imports only click; ``dockyard --help`` reads command names from
entry-point metadata without importing any plugin; a group is imported only when invoked.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

import click

from dockyard import __version__

#: Built-in commands: name -> "module:attribute" (imported on first use).
BUILTINS: dict[str, str] = {
    "version": "dockyard.cli.system:version",
    "info": "dockyard.cli.system:info",
    "daemon": "dockyard.cli.system:daemon",
    "system": "dockyard.cli.system:system",
    "plugins": "dockyard.cli.plugins:plugins",
}


def _registry() -> Any:
    """The installed commands, through the registry's cache (``$XDG_CACHE_HOME/dockyard``)."""
    from dockyard.registry import Registry

    reg = Registry()
    reg.scan_cached(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dockyard")
    return reg


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(BUILTINS) | set(_registry().cli_names()))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = BUILTINS.get(name)
        if target is not None:
            module, _, attr = target.partition(":")
            return getattr(importlib.import_module(module), attr)
        from dockyard.errors import PluginError

        try:
            cmd = _registry().load_cli(name)
        except PluginError as exc:
            raise click.ClickException(str(exc)) from exc
        if cmd is None:
            return None
        if not isinstance(cmd, click.Command):
            raise click.ClickException(f"plugin command {name!r} is not a click command")
        return cmd

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Names only: showing each short help would import every plugin.
        rows = [(name, "(built-in)" if name in BUILTINS else "(plugin)") for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-v", "--version", prog_name="dockyard", message="%(prog)s %(version)s")
@click.option("-H", "--host", metavar="URL",
              help="daemon socket: unix:///path, tcp://host:port or npipe:////./pipe/NAME (default: $DOCKYARD_HOST, else "
                   "$DOCKER_HOST with docker's TLS variables, else unix:///run/dockyard/dockyard.sock)")
@click.pass_context
def cli(ctx: click.Context, host: str | None) -> None:
    """dockyard: containers, images, networks and volumes through dockyardd."""
    ctx.obj = {"host": host}
