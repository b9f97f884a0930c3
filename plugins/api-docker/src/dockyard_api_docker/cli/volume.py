"""``dockyard volume``: create, ls, inspect, rm, prune (requests to the daemon)."""

from __future__ import annotations

import sys

import click

from dockyard.cli.output import FORMAT_OPTION, client_of, print_json, print_table, run_api


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for v in values:
        k, sep, val = v.partition("=")
        if not k:
            raise click.BadParameter(f"{what} {v!r} is not key=value")
        out[k] = val if sep else ""
    return out


@click.group()
def volume() -> None:
    """Manage volumes."""


@volume.command()
@click.argument("name", required=False, default="")
@click.option("-d", "--driver", default="local", show_default=True)
@click.option("-o", "--opt", "opts", multiple=True, help="driver option key=value")
@click.option("--label", "labels", multiple=True, help="label key=value")
@click.pass_context
def create(ctx: click.Context, name: str, driver: str, opts: tuple[str, ...], labels: tuple[str, ...]) -> None:
    """Create a volume (a random name when NAME is omitted)."""
    vol = run_api(lambda: client_of(ctx).post("/volumes/create", {
        "Name": name, "Driver": driver, "DriverOpts": _pairs(opts, "option"), "Labels": _pairs(labels, "label")}))
    click.echo(vol["Name"])


@volume.command("ls")
@click.option("-f", "--filter", "filters", multiple=True, help="dangling=, driver=, label=, name=")
@click.option("-q", "--quiet", is_flag=True)
@FORMAT_OPTION
@click.pass_context
def ls(ctx: click.Context, filters: tuple[str, ...], quiet: bool, fmt: str) -> None:
    """List volumes."""
    import json

    flt: dict[str, dict[str, bool]] = {}
    for k, v in _pairs(filters, "filter").items():
        flt.setdefault(k, {})[v] = True
    res = run_api(lambda: client_of(ctx).get("/volumes", filters=json.dumps(flt) if flt else None))
    vols = res.get("Volumes") or []
    if fmt == "json":
        print_json(vols)
    elif quiet:
        for v in vols:
            click.echo(v["Name"])
    else:
        print_table(["DRIVER", "VOLUME NAME"], [[v["Driver"], v["Name"]] for v in vols])


@volume.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Show volume details (JSON)."""
    print_json([run_api(lambda n=n: client_of(ctx).get(f"/volumes/{n}")) for n in names])


@volume.command("rm")
@click.option("-f", "--force", is_flag=True, help="no error for a missing volume")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, force: bool, names: tuple[str, ...]) -> None:
    """Remove volumes (refused while a container uses one)."""
    from dockyard.errors import DockyardError

    failed = False
    for n in names:
        try:
            client_of(ctx).delete(f"/volumes/{n}", force="1" if force else None)
            click.echo(n)
        except DockyardError as exc:
            click.echo(f"Error: {exc}", err=True)
            failed = True
    if failed:
        sys.exit(1)


@volume.command()
@click.option("-f", "--force", is_flag=True, help="do not ask")
@click.option("--filter", "filters", multiple=True, help="label=..., label!=...")
@click.pass_context
def prune(ctx: click.Context, force: bool, filters: tuple[str, ...]) -> None:
    """Remove every volume no container uses."""
    import json

    from dockyard.client import human_size

    if not force:
        click.confirm("Remove all volumes not used by at least one container?", abort=True)
    flt: dict[str, dict[str, bool]] = {}
    for v in filters:
        k, sep, val = v.partition("=")
        flt.setdefault(k, {})[val if sep else ""] = True
    res = run_api(lambda: client_of(ctx).post("/volumes/prune", filters=json.dumps(flt) if flt else None))
    for name in res.get("VolumesDeleted") or []:
        click.echo(name)
    click.echo(f"Total reclaimed space: {human_size(res.get('SpaceReclaimed') or 0)}")
