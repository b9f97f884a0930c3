"""``dockyard version``, ``info``, ``daemon`` and ``system``."""

from __future__ import annotations

import platform
import sys
from typing import Any

import click

from dockyard import __version__
from dockyard.cli.output import FORMAT_OPTION, client_of, print_json, run_api


@click.command()
@FORMAT_OPTION
@click.pass_context
def version(ctx: click.Context, fmt: str) -> None:
    """Show the client and daemon versions."""
    client = {"Version": __version__, "ApiVersion": "1.41", "Python": platform.python_version(),
              "Os": sys.platform, "Arch": platform.machine()}
    server = run_api(lambda: client_of(ctx).get("/version"))
    if fmt == "json":
        print_json({"Client": client, "Server": server})
        return
    click.echo("Client:")
    click.echo(f" Version:     {client['Version']}\n API version: {client['ApiVersion']}\n"
               f" Python:      {client['Python']}\n OS/Arch:     {client['Os']}/{client['Arch']}")
    click.echo(f"\nServer: {server.get('Platform', {}).get('Name', '')}")
    for comp in server.get("Components") or []:
        click.echo(f" {comp['Name']}:\n  Version:     {comp['Version']}")
        details = comp.get("Details") or {}
        if "ApiVersion" in details:
            click.echo(f"  API version: {details['ApiVersion']} (minimum version {details.get('MinAPIVersion')})")
            click.echo(f"  OS/Arch:     {details.get('Os')}/{details.get('Arch')}")
            click.echo(f"  Kernel:      {details.get('KernelVersion')}")


def _info_lines(info: dict[str, Any]) -> list[str]:
    from dockyard.client import bytes_size

    lines = [
        f"Containers: {info.get('Containers')}",
        f" Running: {info.get('ContainersRunning')}",
        f" Paused: {info.get('ContainersPaused')}",
        f" Stopped: {info.get('ContainersStopped')}",
        f"Images: {info.get('Images')}",
        f"Server Version: {info.get('ServerVersion')}",
        f"Storage Driver: {info.get('Driver')}",
    ]
    lines += [f" {k}: {v}" for k, v in info.get("DriverStatus") or []]
    lines += [f"Cgroup Version: {info.get('CgroupVersion')}",
              f"Default Runtime: {info.get('DefaultRuntime')}",
              f"Kernel Version: {info.get('KernelVersion')}",
              f"Operating System: {info.get('OperatingSystem')}",
              f"Architecture: {info.get('Architecture')}",
              f"CPUs: {info.get('NCPU')}",
              f"Total Memory: {bytes_size(info.get('MemTotal') or 0)}",
              f"Name: {info.get('Name')}",
              f"ID: {info.get('ID')}",
              f"Root Dir: {info.get('DockerRootDir')}",
              f"Live Restore Enabled: {str(info.get('LiveRestoreEnabled')).lower()}",
              f"Experimental: {str(bool(info.get('ExperimentalBuild'))).lower()}",
              f"Checkpoint: {info.get('DockyardCheckpoint') or '-'}",
              "Platforms: " + (", ".join(p["Platform"] + (" (emulated)" if p.get("Emulated") else "")
                                         for p in info.get("DockyardPlatforms") or []) or "-"),
              "Plugins:"]
    for area, names in sorted((info.get("DockyardAreas") or {}).items()):
        lines.append(f" {area}: {', '.join(names) or '-'}")
    for warning in info.get("Warnings") or []:
        lines.append(f"WARNING: {warning}")
    return lines


@click.command()
@FORMAT_OPTION
@click.pass_context
def info(ctx: click.Context, fmt: str) -> None:
    """Show system-wide information from the daemon."""
    data = run_api(lambda: client_of(ctx).get("/info"))
    if fmt == "json":
        print_json(data)
    else:
        click.echo("\n".join(_info_lines(data)))


#: Entry-point group of ``dockyard daemon``'s subcommands (``install``: dockyard-generate).
DAEMON_SUBCOMMANDS = "dockyard.cli.daemon"


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True,
                                 "help_option_names": []})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def daemon(ctx: click.Context, args: tuple[str, ...]) -> None:
    """Run dockyardd in the foreground (takes dockyardd's flags; see `dockyard daemon --help`).

    A first word naming a plugin's subcommand (entry-point group ``dockyard.cli.daemon``, e.g.
    ``install`` from dockyard-generate) runs it instead; dockyardd takes no positional argument.
    """
    if args and not args[0].startswith("-"):
        from dockyard.cli.root import _registry
        from dockyard.errors import PluginError

        try:
            cmd = _registry().load_cli(args[0], DAEMON_SUBCOMMANDS)
        except PluginError as exc:
            raise click.ClickException(str(exc)) from exc
        if cmd is None:
            names = _registry().cli_names(DAEMON_SUBCOMMANDS)
            raise click.UsageError(f"no daemon subcommand {args[0]!r} (installed: {', '.join(names) or 'none'}; "
                                   "`install` comes with dockyard-generate)")
        sys.exit(cmd.main(list(args[1:]), prog_name=f"{ctx.command_path} {args[0]}", obj=ctx.obj,
                          standalone_mode=True))
    from dockyard.daemon import main as daemon_main

    sys.exit(daemon_main(list(args)))


#: Entry-point group of ``dockyard system``'s subcommands (``binfmt``: dockyard-arch-linux).
SYSTEM_SUBCOMMANDS = "dockyard.cli.system"


class _SystemGroup(click.Group):
    """Subcommands from :data:`SYSTEM_SUBCOMMANDS`, imported only when invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        from dockyard.cli.root import _registry

        return _registry().cli_names(SYSTEM_SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from dockyard.cli.root import _registry
        from dockyard.errors import PluginError

        try:
            cmd = _registry().load_cli(name, SYSTEM_SUBCOMMANDS)
        except PluginError as exc:
            raise click.ClickException(str(exc)) from exc
        if cmd is not None and not isinstance(cmd, click.Command):
            raise click.ClickException(f"plugin command {name!r} is not a click command")
        return cmd


@click.group(cls=_SystemGroup)
def system() -> None:
    """Manage this host (subcommands come from plugins: `binfmt` from dockyard-arch-linux)."""
