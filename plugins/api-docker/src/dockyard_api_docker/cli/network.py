"""``dockyard network``: create, ls, inspect, rm, prune, connect, disconnect, through the
daemon's ``/networks`` routes (``dockyard.client.Client``), like ``docker network``."""

from __future__ import annotations

import json
from typing import Any

import click

from dockyard.cli.output import FORMAT_OPTION, client_of, print_json, print_table, run_api


def _pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    out = {}
    for item in values:
        k, sep, v = item.partition("=")
        if not k:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint=what)
        out[k] = v if sep else ""
    return out


def _filters(values: tuple[str, ...]) -> str | None:
    if not values:
        return None
    flt: dict[str, dict[str, bool]] = {}
    for item in values:
        k, sep, v = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not key=value", param_hint="--filter")
        flt.setdefault(k, {})[v] = True
    return json.dumps(flt)


@click.group()
def group() -> None:
    """Manage networks."""


@group.command()
@click.argument("name")
@click.option("-d", "--driver", default="bridge", show_default=True, help="network driver")
@click.option("--subnet", multiple=True, help="subnet in CIDR form (repeatable)")
@click.option("--gateway", multiple=True, help="gateway of the matching --subnet")
@click.option("--ip-range", "ip_range", multiple=True, help="allocate container addresses from this range")
@click.option("--ipam-driver", default="default", show_default=True)
@click.option("--internal", is_flag=True, help="no external connectivity")
@click.option("--attachable", is_flag=True)
@click.option("--ipv6", is_flag=True, help="enable IPv6")
@click.option("--label", multiple=True, help="key=value (repeatable)")
@click.option("-o", "--opt", multiple=True, help="driver option key=value (repeatable)")
@click.pass_context
def create(ctx: click.Context, name: str, driver: str, subnet: tuple[str, ...], gateway: tuple[str, ...],
           ip_range: tuple[str, ...], ipam_driver: str, internal: bool, attachable: bool, ipv6: bool,
           label: tuple[str, ...], opt: tuple[str, ...]) -> None:
    """Create a network; prints its ID."""
    if len(gateway) > len(subnet) or len(ip_range) > len(subnet):
        raise click.UsageError("every --gateway and --ip-range needs a --subnet")
    config = []
    for i, sn in enumerate(subnet):
        item: dict[str, Any] = {"Subnet": sn}
        if i < len(gateway):
            item["Gateway"] = gateway[i]
        if i < len(ip_range):
            item["IPRange"] = ip_range[i]
        config.append(item)
    body = {"Name": name, "Driver": driver, "CheckDuplicate": True, "Internal": internal,
            "Attachable": attachable, "EnableIPv6": ipv6, "Labels": _pairs(label, "--label"),
            "Options": _pairs(opt, "--opt"), "IPAM": {"Driver": ipam_driver, "Options": {}, "Config": config}}
    out = run_api(lambda: client_of(ctx).post("/networks/create", body))
    click.echo(out["Id"])


@group.command("ls")
@click.option("-f", "--filter", "filters", multiple=True, help="key=value: driver, id, label, name, scope, type, dangling")
@click.option("-q", "--quiet", is_flag=True, help="only IDs")
@click.option("--no-trunc", is_flag=True, help="full IDs")
@FORMAT_OPTION
@click.pass_context
def ls(ctx: click.Context, filters: tuple[str, ...], quiet: bool, no_trunc: bool, fmt: str) -> None:
    """List networks."""
    nets = run_api(lambda: client_of(ctx).get("/networks", filters=_filters(filters)))
    nets = sorted(nets, key=lambda n: n["Name"])
    if fmt == "json":
        print_json(nets)
        return

    def short(i: str) -> str:
        return i if no_trunc else i[:12]

    if quiet:
        for n in nets:
            click.echo(short(n["Id"]))
        return
    print_table(["NETWORK ID", "NAME", "DRIVER", "SCOPE"],
                [[short(n["Id"]), n["Name"], n["Driver"], n["Scope"]] for n in nets])


@group.command()
@click.argument("networks", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, networks: tuple[str, ...]) -> None:
    """Show networks in detail (JSON)."""
    client = client_of(ctx)
    out, failed = [], []
    for ref in networks:
        try:
            out.append(client.get(f"/networks/{ref}"))
        except Exception as exc:  # noqa: BLE001 - reported, the others are still shown
            failed.append(f"{ref}: {exc}")
    print_json(out)
    if failed:
        raise click.ClickException("; ".join(failed))


@group.command()
@click.argument("networks", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, networks: tuple[str, ...]) -> None:
    """Remove networks; prints each removed name."""
    client = client_of(ctx)
    failed = []
    for ref in networks:
        try:
            client.delete(f"/networks/{ref}")
            click.echo(ref)
        except Exception as exc:  # noqa: BLE001
            failed.append(str(exc))
    if failed:
        raise click.ClickException("\n".join(failed))


@group.command()
@click.option("-f", "--force", is_flag=True, help="do not ask for confirmation")
@click.option("--filter", "filters", multiple=True, help="until=<time>, label=<k[=v]>, label!=<k[=v]>")
@click.pass_context
def prune(ctx: click.Context, force: bool, filters: tuple[str, ...]) -> None:
    """Remove all unused user-defined networks."""
    if not force and not click.confirm("WARNING! This will remove all custom networks not used by at least "
                                       "one container.\nAre you sure you want to continue?"):
        return
    out = run_api(lambda: client_of(ctx).post("/networks/prune", filters=_filters(filters)))
    deleted = out.get("NetworksDeleted") or []
    if deleted:
        click.echo("Deleted Networks:")
        for name in deleted:
            click.echo(name)


@group.command()
@click.argument("network")
@click.argument("container")
@click.option("--alias", multiple=True, help="network-scoped alias (repeatable)")
@click.option("--ip", default="", help="IPv4 address")
@click.pass_context
def connect(ctx: click.Context, network: str, container: str, alias: tuple[str, ...], ip: str) -> None:
    """Connect a container to a network."""
    body = {"Container": container, "EndpointConfig": {"Aliases": list(alias),
                                                       "IPAMConfig": {"IPv4Address": ip} if ip else {}}}
    run_api(lambda: client_of(ctx).post(f"/networks/{network}/connect", body))


@group.command()
@click.argument("network")
@click.argument("container")
@click.option("-f", "--force", is_flag=True)
@click.pass_context
def disconnect(ctx: click.Context, network: str, container: str, force: bool) -> None:
    """Disconnect a container from a network."""
    run_api(lambda: client_of(ctx).post(f"/networks/{network}/disconnect", {"Container": container, "Force": force}))
