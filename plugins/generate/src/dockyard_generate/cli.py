"""``dockyard generate BACKEND [flags] CONTAINER|daemon`` and ``dockyard daemon install``.

The backends are not this distribution's: ``generate``'s subcommands are the names the
installed supervisor plugins give (``dockyard_supervisors``, collected by the kernel), so a
third party's ``s6`` is ``dockyard generate s6`` without a change here. podman's ``generate
systemd`` is the model: ``--name`` (the container's name instead of its ID in the unit's name
and command), ``--new``, ``--files`` (write ``<unit files>`` in the current directory and print
their paths; otherwise print them), ``--restart-policy``, ``--time``, ``--container-prefix``,
``--separator``.

Every error is found before anything is written: an unknown backend, a container that does not
exist, a unit name the supervisor forbids, a restart policy it cannot apply.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import click

from dockyard.cli.output import client_of
from dockyard.specs.supervisor import RESTART_POLICIES, Supervisor, Supervisors, UnitFile


def supervisors() -> Supervisors:
    """The installed backends, through a kernel of the installed plugins (no daemon needed)."""
    from dockyard.config import Config
    from dockyard.kernel import Kernel

    return Kernel.build(Config()).supervisors()


def _backend(name: str) -> Supervisor:
    from dockyard.errors import DockyardError

    try:
        return supervisors().get(name)
    except DockyardError as exc:
        raise click.UsageError(str(exc)) from exc


class BackendGroup(click.Group):
    """Subcommands are the installed backends; an unknown one names what is installed."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return supervisors().names()

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        _backend(name)  # raises a usage error naming the installed ones
        return _generate_command(name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None, list[str]]:
        cmd = self.get_command(ctx, args[0])
        return args[0], cmd, args[1:]


@click.group(cls=BackendGroup)
def generate() -> None:
    """Generate files that run a container, or dockyardd itself ("daemon"), as a service of a
    process supervisor (systemd, sysv, upstart, runit, supervisord: the installed backends)."""


def _generate_command(backend: str) -> click.Command:
    @click.command(name=backend, help=f"{backend} files for CONTAINER, or for dockyardd when CONTAINER is \"daemon\".")
    @click.option("-n", "--name", "use_name", is_flag=True, help="use the container's name instead of its ID")
    @click.option("--new", is_flag=True, help="create the container at start and remove it at stop "
                                              "(it gets no restart policy: the unit owns its life)")
    @click.option("-f", "--files", is_flag=True, help="write the files in the current directory and print their paths")
    @click.option("--restart-policy", type=click.Choice(RESTART_POLICIES), default=None,
                  help="when the supervisor restarts the service (default on-failure; no for a container with a "
                       "restart policy of its own)")
    @click.option("-t", "--time", "stop_timeout", type=click.IntRange(0, 3600), default=None,
                  help="stop timeout in seconds (default 10 for a container, 20 for the daemon)")
    @click.option("--container-prefix", default="container", show_default=True, help="unit name prefix")
    @click.option("--separator", default="-", show_default=True, help="between the prefix and the name")
    @click.option("--daemon-unit", default="dockyard", show_default=True,
                  help="the daemon's service name (a container's unit starts after it; the daemon's own name)")
    @click.option("--data-root", default="", help="daemon: dockyardd's --data-root")
    @click.option("--exec-root", default="", help="daemon: dockyardd's --exec-root (its socket and PID file are there)")
    @click.option("--listen", "listen", multiple=True, help="daemon: an address to serve (-H), repeatable")
    @click.option("--no-socket-activation", is_flag=True, help="daemon: dockyardd binds its sockets itself")
    @click.argument("target")
    @click.pass_context
    def command(ctx: click.Context, target: str, use_name: bool, new: bool, files: bool, restart_policy: str | None,
                stop_timeout: int | None, container_prefix: str, separator: str, daemon_unit: str, data_root: str,
                exec_root: str, listen: tuple[str, ...], no_socket_activation: bool) -> None:
        sup = _backend(backend)
        if target == "daemon":
            if new:
                raise click.UsageError("--new is for a container; dockyardd is not created")
            from dockyard_generate.units import daemon_unit as make

            unit = make(name=daemon_unit, hosts=listen, data_root=data_root, exec_root=exec_root,
                        socket_activation=not no_socket_activation,
                        stop_timeout=20 if stop_timeout is None else stop_timeout)
            out = _rendered(sup, unit.name, lambda: sup.daemon_files(unit))
        else:
            out = _container_files(ctx, sup, target, use_name, new, restart_policy,
                                   10 if stop_timeout is None else stop_timeout, container_prefix, separator,
                                   daemon_unit)
        _emit(out, files, Path.cwd())

    return command


def _rendered(sup: Supervisor, name: str, render: Any) -> list[UnitFile]:
    from dockyard.errors import DockyardError

    try:
        sup.check_name(name)
        return render()
    except (DockyardError, ValueError) as exc:
        raise click.UsageError(f"{exc}; nothing written") from exc


def _container_files(ctx: click.Context, sup: Supervisor, target: str, use_name: bool, new: bool,
                     restart: str | None, stop_timeout: int, prefix: str, separator: str,
                     daemon: str) -> list[UnitFile]:
    from dockyard.errors import DockyardError
    from dockyard_generate.units import DEFAULT_RESTART, ContainerRequest, check_restart, container_unit

    if restart is None and DEFAULT_RESTART not in sup.restart_policies:
        restart = "no"  # a supervisor that restarts nothing (sysV): the container's own policy only
    client = client_of(ctx)
    try:
        inspect = client.get(f"/containers/{target}/json")
    except DockyardError as exc:
        raise click.ClickException(f"{exc}; nothing written") from exc
    # the unit talks to the daemon this command talked to: -H, or DOCKYARD_HOST/DOCKER_HOST as
    # resolved now (a unit does not see this shell's environment); TLS files are not carried over
    addr = client.address
    host = "" if addr.source == "default" else (addr.given or str(addr))
    req = ContainerRequest(new=new, use_name=use_name, restart=restart, stop_timeout=stop_timeout, prefix=prefix,
                           separator=separator, daemon=daemon, host=host)
    try:
        unit = container_unit(inspect, req)
        check_restart(sup, unit.restart)
    except DockyardError as exc:
        raise click.UsageError(f"{exc}; nothing written") from exc
    return _rendered(sup, unit.name, lambda: sup.container_files(unit))


def _emit(files: list[UnitFile], write: bool, directory: Path) -> None:
    if write:
        from dockyard_generate.units import write_files

        for path in write_files(directory, files):
            click.echo(str(path))
        return
    for i, f in enumerate(files):
        if len(files) > 1:
            click.echo(f"{'' if i == 0 else chr(10)}# {f.path}")
        click.echo(f.text, nl=not f.text.endswith("\n"))


@click.command()
@click.option("--supervisor", "name", default="auto", show_default=True,
              help="auto (the one this host runs), or an installed backend: systemd, sysv, upstart, runit, supervisord")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"), show_default=True,
              help="install below this directory (an image being built); nothing is started unless it is /")
@click.option("--service", default="dockyard", show_default=True, help="the daemon's service name")
@click.option("--data-root", default="", help="dockyardd's --data-root")
@click.option("--exec-root", default="", help="dockyardd's --exec-root (its socket and PID file are there)")
@click.option("--config-file", default="", help="dockyardd's --config-file")
@click.option("--listen", multiple=True, help="an address to serve (-H), repeatable")
@click.option("--no-socket-activation", is_flag=True, help="dockyardd binds its sockets itself")
@click.option("--no-start", is_flag=True, help="write the files only")
@click.option("-t", "--time", "stop_timeout", type=click.IntRange(1, 3600), default=20, show_default=True,
              help="seconds between SIGTERM and SIGKILL to dockyardd (its containers are never signalled)")
def daemon_install(name: str, root: Path, service: str, data_root: str, exec_root: str, config_file: str,
                   listen: tuple[str, ...], no_socket_activation: bool, no_start: bool, stop_timeout: int) -> None:
    """Install dockyardd as a service of this host's process supervisor and start it."""
    from dockyard.errors import DockyardError
    from dockyard_generate.units import daemon_unit, write_files

    found = supervisors()
    try:
        backend = found.detect(root) if name == "auto" else found.backend(name)
    except DockyardError as exc:
        raise click.UsageError(f"{exc}; nothing written") from exc
    sup = backend.factory()
    unit = daemon_unit(name=service, hosts=listen, data_root=data_root, exec_root=exec_root, config_file=config_file,
                       socket_activation=not no_socket_activation, stop_timeout=stop_timeout)
    files = _rendered(sup, service, lambda: sup.daemon_files(unit))
    directory = root / sup.directory.lstrip("/")
    for path in write_files(directory, files):
        click.echo(f"wrote {path}")
    commands = sup.activate(service, files)
    if no_start or root.resolve() != Path("/"):
        for argv in commands:
            click.echo(f"to start it: {' '.join(argv)}")
        return
    for argv in commands:
        res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if res.returncode != 0:
            raise click.ClickException(f"{' '.join(argv)} failed ({res.returncode}): {(res.stderr or res.stdout).strip()}")
        click.echo(f"ran {' '.join(argv)}")
    click.echo(f"dockyardd is the {backend.name} service {service}")
