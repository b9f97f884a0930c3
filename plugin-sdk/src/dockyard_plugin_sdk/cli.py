"""``dockyard plugin``: commands for plugin authors (entry point ``dockyard.cli: plugin``).

``dockyard plugin new AREA NAME`` writes a new driver distribution ``dockyard-<area>-<name>``
from the templates in ``dockyard_plugin_sdk/templates``: ``_common/`` (pyproject, README,
package ``__init__``) plus ``<kind>/`` (a minimal working driver and its conformance test).
Files ending in ``.tmpl`` are rendered with :class:`string.Template` and lose the suffix; a
path component ``__package__`` becomes the package name.

Only click is imported at module level: the root CLI imports this module when ``plugin`` is
invoked, and ``dockyard --help`` must stay cheap.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass
from pathlib import Path
from string import Template

import click

TEMPLATES = Path(__file__).parent / "templates"
NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


@dataclass(frozen=True)
class KindTemplate:
    """What differs between driver kinds, besides the files under ``templates/<kind>/``."""

    suffix: str  # class name suffix: <Name><suffix>
    contract: str  # conformance mixin
    kit: str  # conformance module
    about: str
    selection: str


KINDS: dict[str, KindTemplate] = {
    "arch": KindTemplate(
        "Runtime", "PortableRuntimeContract", "arch_portable",
        "The generated driver runs a container's command as a child process of the daemon (its own\n"
        "process group, the rootfs as working directory, logs kept in memory, pause by SIGSTOP): the\n"
        "ABC's plumbing with no isolation, to complete with your platform's (namespaces, a VM, an API).",
        " (no setting picks it yet: the engine runs `linux`; `kernel.driver_ready(\"arch\", NAME)` reaches it)"),
    "provision": KindTemplate(
        "Provisioner", "ProvisionerContract", "provision",
        "The generated driver keeps each host as a directory with a `host.json` state file and\n"
        "reports a unix socket as the engine address: a working skeleton to replace with real\n"
        "machines (a VM, a network namespace, an SSH host).",
        " (per host: the host's `driver` field)"),
    "cluster": KindTemplate(
        "ClusterStore", "ClusterStoreContract", "cluster",
        "The generated driver keeps keys (with etcd's revisions), leases and a change log in one\n"
        "JSON file (atomic writes under a lock; `watch` polls the log): a working skeleton to\n"
        "replace with a consensus store.",
        " (the daemon's `cluster-store` setting)"),
    "storage": KindTemplate(
        "LayerDriver", "StorageContract", "storage",
        "The generated driver keeps every layer as a full copy of its parent (`cp -a`, then the\n"
        "layer tar extracted safely by `dockyard.tarsafe`); `diff` compares the tree with the\n"
        "parent's. A working skeleton to replace with snapshots (overlayfs, btrfs) for speed.",
        " (the daemon's `storage-driver` setting)"),
    "network": KindTemplate(
        "NetworkDriver", "NetworkContract", "network",
        "The generated driver makes a Linux bridge per network (holding the gateway address) and a\n"
        "veth pair per endpoint, through iproute2, every interface named with the daemon's owner\n"
        "token: a working skeleton to extend with forwarding, NAT and published ports.",
        " (per network: `docker network create --driver NAME`)"),
    "volume": KindTemplate(
        "VolumeDriver", "VolumeContract", "volume",
        "The generated driver keeps each volume as a directory, with per-container mount counts\n"
        "in a JSON file beside it (so they survive a daemon restart): a working skeleton to\n"
        "replace with your storage.",
        " (per volume: `docker volume create --driver NAME`)"),
}


def templated_kinds() -> list[str]:
    """Driver kinds that have a template directory (and a row in :data:`KINDS`)."""
    return sorted(k for k in KINDS if (TEMPLATES / k).is_dir())


def class_name(name: str, kind: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part) + KINDS[kind].suffix


def validate(kind: str, name: str) -> None:
    """Raise ValueError when ``kind`` has no template or ``name`` cannot name a driver."""
    if kind not in templated_kinds():
        raise ValueError(f"no template for driver kind {kind!r}; templated kinds: "
                         f"{', '.join(templated_kinds())}")
    if not NAME_RE.match(name) or keyword.iskeyword(name) or name.endswith("_"):
        raise ValueError(f"invalid driver name {name!r}: use a lowercase identifier "
                         "(a-z, 0-9, _; starting with a letter; at most 40 characters)")


def render(kind: str, name: str, target: Path) -> list[Path]:
    """Write the project for driver ``name`` of ``kind`` into ``target`` (must not exist).

    Returns the files written, relative to ``target``.
    """
    from dockyard.specs import NAMESPACES

    validate(kind, name)
    if target.exists():
        raise FileExistsError(f"{target} already exists; refusing to overwrite it")
    area = NAMESPACES[kind][0]
    info = KINDS[kind]
    values = {
        "kind": kind, "area": area, "name": name,
        "distribution": f"dockyard-{area}-{name.replace('_', '-')}",
        "package": f"dockyard_{area}_{name}",
        "class_name": class_name(name, kind),
        "summary": f"A dockyard {kind} driver: {name}",
        "contract": info.contract, "kit": info.kit, "about": info.about,
        "selection": info.selection,
    }
    files: dict[Path, str] = {}
    for source_dir in (TEMPLATES / "_common", TEMPLATES / kind):
        for src in sorted(p for p in source_dir.rglob("*") if p.is_file()):
            if "__pycache__" in src.parts:
                continue
            rel = src.relative_to(source_dir)
            rel = Path(*(values["package"] if part == "__package__" else part for part in rel.parts))
            text = src.read_text()
            if rel.suffix == ".tmpl":
                rel = rel.with_suffix("")
                text = Template(text).substitute(values)
            files[rel] = text
    target.mkdir(parents=True)
    for rel, text in files.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_text(text)
    return sorted(files)


@click.group("plugin", help="Write dockyard drivers and plugins.")
def plugin_group() -> None:
    pass


@plugin_group.command("new")
@click.argument("area")
@click.argument("name")
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="directory in which dockyard-<area>-<name>/ is created")
@click.option("--path", "exact", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="create the project exactly here instead (e.g. drivers/provision/NAME in the "
                   "dockyard tree)")
def new(area: str, name: str, dest: Path, exact: Path | None) -> None:
    """Create a driver distribution for driver kind AREA named NAME.

    The project installs (`pip install -e DIR`), registers NAME in `dockyard.drivers.AREA`,
    and passes the SDK's conformance kit for AREA (`pytest DIR`).
    """
    try:
        validate(area, name)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    from dockyard.specs import NAMESPACES

    target = exact if exact is not None else dest / f"dockyard-{NAMESPACES[area][0]}-{name.replace('_', '-')}"
    try:
        files = render(area, name, target)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created {target}/")
    for rel in files:
        click.echo(f"  {rel}")
    click.echo(f"next: pip install -e '{target}[test]' && pytest {target}")


@plugin_group.command("kinds")
def kinds() -> None:
    """List the driver kinds `plugin new` has a template for."""
    for kind in templated_kinds():
        click.echo(kind)
