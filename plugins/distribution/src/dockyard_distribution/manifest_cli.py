"""``dockyard manifest create|add|inspect|push|rm``: podman's verbs for image indexes (a thin
client of ``/dockyard/v1/manifests``; see :mod:`dockyard_distribution.manifests`)."""

from __future__ import annotations

from typing import Any

import click


def _client(ctx: click.Context) -> Any:
    from dockyard.cli.output import client_of

    return client_of(ctx)


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="/:@")


@click.group()
def manifest() -> None:
    """Assemble multi-platform image indexes from local images and push them."""


@manifest.command()
@click.argument("name")
@click.argument("images", nargs=-1)
@click.option("--all", "all_platforms", is_flag=True, help="every platform present of a multi-platform IMAGE")
@click.pass_context
def create(ctx: click.Context, name: str, images: tuple[str, ...], all_platforms: bool) -> None:
    """Create the manifest list NAME, listing local IMAGES."""
    from dockyard.cli.output import run_api

    res = run_api(lambda: _client(ctx).post("/dockyard/v1/manifests",
                                            {"Name": name, "Images": list(images), "All": all_platforms}))
    click.echo(res["Id"])


@manifest.command()
@click.argument("name")
@click.argument("image")
@click.option("--os", "os_", default="", help="the platform's OS (default: the image's)")
@click.option("--arch", default="", help="the platform's architecture (default: the image's)")
@click.option("--variant", default="", help="the platform's variant (arm: v7, arm64: v8)")
@click.option("--all", "all_platforms", is_flag=True, help="every platform present of a multi-platform IMAGE")
@click.pass_context
def add(ctx: click.Context, name: str, image: str, os_: str, arch: str, variant: str, all_platforms: bool) -> None:
    """Add local IMAGE to the manifest list NAME."""
    from dockyard.cli.output import run_api

    res = run_api(lambda: _client(ctx).post(f"/dockyard/v1/manifests/{_quote(name)}/add",
                                            {"Image": image, "Os": os_, "Architecture": arch, "Variant": variant,
                                             "All": all_platforms}))
    click.echo(res["Id"])


@manifest.command()
@click.argument("name")
@click.pass_context
def inspect(ctx: click.Context, name: str) -> None:
    """Show the manifest list NAME (the index document)."""
    from dockyard.cli.output import print_json, run_api

    print_json(run_api(lambda: _client(ctx).get(f"/dockyard/v1/manifests/{_quote(name)}/json")))


@manifest.command()
@click.argument("name")
@click.argument("destination", required=False, default="")
@click.option("-q", "--quiet", is_flag=True, help="print only the digest")
@click.pass_context
def push(ctx: click.Context, name: str, destination: str, quiet: bool) -> None:
    """Push every platform of NAME, then the list, to DESTINATION (default: NAME)."""
    from dockyard_distribution.cli import ProgressView, _auth_header, _registry_of, _run

    host = _registry_of(destination or name)
    view = ProgressView(quiet)
    _run(_client(ctx).stream_json("POST", f"/dockyard/v1/manifests/{_quote(name)}/push",
                                  {"destination": destination} if destination else {},
                                  headers=_auth_header(host)), view)
    if view.aux:
        click.echo(view.aux.get("Digest", ""))


@manifest.command("rm")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Remove the manifest lists NAMES (the images listed keep their own names)."""
    from dockyard.cli.output import run_api

    for name in names:
        run_api(lambda n=name: _client(ctx).delete(f"/dockyard/v1/manifests/{_quote(n)}"))
        click.echo(name)
