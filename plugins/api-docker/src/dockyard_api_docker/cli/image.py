"""``dockyard image``: bootstrap, ls, inspect, history, tag, rm, load, save, import, prune.

Every command is a request to the daemon (``-H``/``DOCKYARD_HOST``); load and import show rich
progress bars from the daemon's JSON message stream.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from dockyard.cli.output import FORMAT_OPTION, client_of, print_json, print_table, run_api


def _short(image_id: str) -> str:
    return image_id.removeprefix("sha256:")[:12]


def _ago(ts: int) -> str:
    d = max(0, time.time() - ts)
    for secs, unit in ((86400 * 365, "year"), (86400 * 30, "month"), (86400 * 7, "week"), (86400, "day"),
                       (3600, "hour"), (60, "minute")):
        if d >= secs:
            n = int(d // secs)
            return f"{n} {unit}{'s' if n > 1 else ''} ago"
    return "Less than a minute ago"


def _filters(values: tuple[str, ...]) -> str | None:
    import json

    if not values:
        return None
    out: dict[str, dict[str, bool]] = {}
    for v in values:
        key, sep, val = v.partition("=")
        if not sep:
            raise click.BadParameter(f"filter {v!r} is not key=value")
        out.setdefault(key, {})[val] = True
    return json.dumps(out)


@click.group()
def image() -> None:
    """Manage images."""


@image.command()
@click.argument("name", default="busybox")
@click.option("--platform", default="", help="linux/arm64 or linux/arm/v7: Debian's busybox-static of that "
                                             "architecture (make install fetches them), added to NAME's index")
@click.pass_context
def bootstrap(ctx: click.Context, name: str, platform: str) -> None:
    """Build NAME (default busybox:latest) from the host's busybox-static, offline."""
    params = {"name": name, **({"platform": platform} if platform else {})}
    res = run_api(lambda: client_of(ctx).post("/dockyard/images/bootstrap", **params))
    click.echo(f"{', '.join(res.get('RepoTags') or [])} {res['Id']}")


@image.command("ls")
@click.option("-a", "--all", "show_all", is_flag=True, help="show intermediate images too")
@click.option("-f", "--filter", "filters", multiple=True, help="key=value (reference, label, dangling, before, since)")
@click.option("-q", "--quiet", is_flag=True, help="only IDs")
@FORMAT_OPTION
@click.pass_context
def ls(ctx: click.Context, show_all: bool, filters: tuple[str, ...], quiet: bool, fmt: str) -> None:
    """List images."""
    from dockyard.client import human_size

    rows = run_api(lambda: client_of(ctx).get("/images/json", all="1" if show_all else None,
                                               filters=_filters(filters)))
    if fmt == "json":
        print_json(rows)
        return
    if quiet:
        for r in rows:
            click.echo(_short(r["Id"]))
        return
    table = []
    for r in rows:
        for tag in r.get("RepoTags") or ["<none>:<none>"]:
            repo, _, t = tag.rpartition(":")
            table.append([repo, t, _short(r["Id"]), _ago(r["Created"]), human_size(r["Size"], 3)])
    print_table(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], table)


@image.command()
@click.argument("names", nargs=-1, required=True)
@click.option("--platforms", is_flag=True, help="the image index: every platform, present here or not")
@click.pass_context
def inspect(ctx: click.Context, names: tuple[str, ...], platforms: bool) -> None:
    """Show the details of images (JSON); --platforms: the image index a name points to, every
    platform's manifest (``docker manifest inspect``) and whether it is here."""
    if platforms:
        docs = [run_api(lambda n=n: client_of(ctx).get(f"/dockyard/images/{n}/platforms")) for n in names]
        print_json(docs[0] if len(docs) == 1 else docs)
        return
    print_json([run_api(lambda n=n: client_of(ctx).get(f"/images/{n}/json")) for n in names])


@image.command()
@click.argument("name")
@FORMAT_OPTION
@click.pass_context
def history(ctx: click.Context, name: str, fmt: str) -> None:
    """Show the layers and history of an image."""
    from dockyard.client import human_size

    rows = run_api(lambda: client_of(ctx).get(f"/images/{name}/history"))
    if fmt == "json":
        print_json(rows)
        return
    print_table(["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"],
                [[_short(r["Id"]) if r["Id"] != "<missing>" else "<missing>", _ago(r["Created"]),
                  (r["CreatedBy"][:45] + "…") if len(r["CreatedBy"]) > 46 else r["CreatedBy"],
                  human_size(r["Size"], 3), r["Comment"]] for r in rows])


@image.command()
@click.argument("source")
@click.argument("target")
@click.pass_context
def tag(ctx: click.Context, source: str, target: str) -> None:
    """Give image SOURCE the name TARGET (repo[:tag])."""
    from dockyard.reference import parse_normalized

    ref = run_api(lambda: parse_normalized(target))
    run_api(lambda: client_of(ctx).request("POST", f"/images/{source}/tag",
                                           {"repo": ref.name, "tag": ref.tag or "latest"}).read())


@image.command("rm")
@click.option("-f", "--force", is_flag=True, help="untag/remove even when in use by stopped containers")
@click.option("--no-prune", is_flag=True, help="keep untagged parents")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, force: bool, no_prune: bool, names: tuple[str, ...]) -> None:
    """Remove images (untag, then delete when no name is left)."""
    failed = False
    for n in names:
        try:
            records = client_of(ctx).delete(f"/images/{n}", force="1" if force else None,
                                            noprune="1" if no_prune else None)
        except Exception as exc:  # noqa: BLE001 - reported per name, like docker rmi
            from dockyard.errors import DockyardError

            if not isinstance(exc, DockyardError):
                raise
            click.echo(f"Error: {exc}", err=True)
            failed = True
            continue
        for rec in records or []:
            for k, v in rec.items():
                click.echo(f"{k}: {v}")
    if failed:
        sys.exit(1)


@image.command()
@click.option("-i", "--input", "path", type=click.Path(exists=True, dir_okay=False),
              help="archive to load (default: stdin)")
@click.option("-q", "--quiet", is_flag=True, help="no progress bars")
@click.pass_context
def load(ctx: click.Context, path: str | None, quiet: bool) -> None:
    """Load images from a docker-archive or OCI layout tar (docker/podman save, skopeo)."""
    from dockyard.client import json_lines
    from dockyard_api_docker.cli._stream import request, show_stream

    f = open(path, "rb") if path else sys.stdin.buffer  # noqa: SIM115
    try:
        resp = request(ctx, "POST", "/images/load", {"quiet": "1" if quiet else "0"}, body=f)
        show_stream(json_lines(resp), quiet=quiet)
    finally:
        if path:
            f.close()


@image.command()
@click.option("-o", "--output", "path", type=click.Path(dir_okay=False), help="file to write (default: stdout)")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def save(ctx: click.Context, path: str | None, names: tuple[str, ...]) -> None:
    """Save images as a docker-archive (loadable by docker and podman load)."""
    from dockyard_api_docker.cli._stream import request

    if path is None and sys.stdout.isatty():
        raise click.ClickException("refusing to write an archive to a terminal; use -o FILE or a pipe")
    resp = request(ctx, "GET", "/images/get", {"names": list(names)})
    out = open(path, "wb") if path else sys.stdout.buffer  # noqa: SIM115
    try:
        while chunk := resp.read(1 << 20):
            out.write(chunk)
    finally:
        resp.close()
        if path:
            out.close()


@image.command("import")
@click.argument("source")
@click.argument("reference", required=False, default="")
@click.option("-c", "--change", "changes", multiple=True, help="Dockerfile instruction (CMD, ENV, ...)")
@click.option("-m", "--message", default="", help="commit message")
@click.pass_context
def import_(ctx: click.Context, source: str, reference: str, changes: tuple[str, ...], message: str) -> None:
    """Import a root filesystem tar (SOURCE a file or -) as an image named REFERENCE."""
    from dockyard.client import json_lines
    from dockyard.reference import parse_normalized
    from dockyard_api_docker.cli._stream import request, show_stream

    params: dict[str, Any] = {"fromSrc": "-", "changes": list(changes), "message": message or None}
    if reference:
        ref = run_api(lambda: parse_normalized(reference))
        params.update(repo=ref.name, tag=ref.tag or "latest")
    f = sys.stdin.buffer if source == "-" else open(source, "rb")  # noqa: SIM115
    try:
        resp = request(ctx, "POST", "/images/create", params, body=f)
        show_stream(json_lines(resp))
    finally:
        if source != "-":
            f.close()


@image.command()
@click.option("-a", "--all", "all_", is_flag=True, help="all unused images, not only dangling ones")
@click.option("-f", "--force", is_flag=True, help="do not ask")
@click.option("--filter", "filters", multiple=True, help="label=..., until=...")
@click.pass_context
def prune(ctx: click.Context, all_: bool, force: bool, filters: tuple[str, ...]) -> None:
    """Remove unused images."""
    import json

    from dockyard.client import human_size

    if not force:
        click.confirm("Remove all dangling images?" if not all_ else "Remove all images without containers?",
                      abort=True)
    flt = json.loads(_filters(filters) or "{}")
    if all_:
        flt["dangling"] = {"false": True}
    res = run_api(lambda: client_of(ctx).post("/images/prune", filters=json.dumps(flt) if flt else None))
    for rec in res.get("ImagesDeleted") or []:
        for k, v in rec.items():
            click.echo(f"{k}: {v}")
    click.echo(f"Total reclaimed space: {human_size(res.get('SpaceReclaimed') or 0)}")
