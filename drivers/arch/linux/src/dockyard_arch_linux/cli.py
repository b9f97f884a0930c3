"""``dockyard system binfmt install|status|remove``: the host's binfmt_misc handlers for
foreign architectures (qemu-user-static), made and removed only on request.

These act on this host's kernel directly (as root), not through a daemon: a registration is
the host's, every engine on it sees the same. ``status`` needs no privilege.
"""

from __future__ import annotations

import json

import click


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


@click.group()
def binfmt() -> None:
    """Foreign architectures under emulation (binfmt_misc + qemu-user-static)."""


@binfmt.command()
@click.argument("machines", nargs=-1)
def install(machines: tuple[str, ...]) -> None:
    """Register qemu-user-static for MACHINES (default: aarch64 arm riscv64) with the F flag,
    where no handler exists; a handler someone else made is kept and reported."""
    from dockyard_arch_linux import binfmt as b

    try:
        out = b.install(list(machines) or None)
    except b.BinfmtError as exc:
        raise _fail(exc) from exc
    for line in out.lines():
        click.echo(line)


@binfmt.command()
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("-a", "--all", "show_all", is_flag=True, help="also machines with no handler and no interpreter")
def status(fmt: str, show_all: bool) -> None:
    """Which foreign platforms containers can run, through which handler (ours or another's)."""
    from dockyard_arch_linux import binfmt as b

    rep = b.report()
    if fmt == "json":
        click.echo(json.dumps(rep, indent=2))
        return
    if not rep["Mounted"]:
        click.echo("binfmt_misc: not mounted (`dockyard system binfmt install` mounts it)")
    elif not rep["Enabled"]:
        click.echo("binfmt_misc: disabled")
    click.echo(f"{'PLATFORM':<16}{'MACHINE':<13}{'USABLE':<8}{'HANDLER':<26}NOTE")
    for row in rep["Machines"]:
        if not show_all and not row["Handlers"] and "not installed" in row["Why"]:
            continue
        handlers = row["Handlers"]
        name = row["Entry"] or (handlers[0]["name"] if handlers else "-")
        who = next((("dockyard" if h["Ours"] else "someone else") for h in handlers if h["name"] == name), "")
        note = row["Why"] or f"{who}'s, flags {next(h['flags'] for h in handlers if h['name'] == name)}"
        click.echo(f"{row['Platform']:<16}{row['Machine']:<13}{'yes' if row['Usable'] else 'no':<8}{name:<26}{note}")


@binfmt.command()
@click.argument("names", nargs=-1)
def remove(names: tuple[str, ...]) -> None:
    """Remove dockyard's handlers (all, or the NAMES/machines given); never another's."""
    from dockyard_arch_linux import binfmt as b

    try:
        out = b.remove(list(names) or None)
    except b.BinfmtError as exc:
        raise _fail(exc) from exc
    for line in out.lines() or ["nothing to remove"]:
        click.echo(line)
