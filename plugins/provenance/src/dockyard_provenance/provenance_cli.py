"""``dockyard provenance show|verify|attestations``: the host's lifecycle log and build
attestations, read through the daemon (``/dockyard/v1/provenance/...``); ``verify --dir DIR``
checks a copied log offline with its public key."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click


def _client(ctx: click.Context) -> Any:
    from dockyard.cli.output import client_of

    return client_of(ctx)


@click.group()
def provenance() -> None:
    """The host's signed lifecycle log and build attestations."""


@provenance.command()
@click.argument("ref")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def show(ctx: click.Context, ref: str, fmt: str) -> None:
    """Tell the full story of a container or image (also one that is gone: ID prefix or name)."""
    doc = _client(ctx).get("/dockyard/v1/provenance/log", object=ref)
    if fmt == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"{doc['Kind']} {', '.join(i[:19] for i in doc['IDs'])}")
    for e in doc["Entries"]:
        when = datetime.fromtimestamp(e["Time"] / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        attrs = e.get("Attributes") or {}
        extra = ", ".join(f"{k}={attrs[k]}" for k in ("name", "image", "exitCode", "signal") if k in attrs)
        click.echo(f"{e['Seq']:>8}  {when}  {e['Type']:<9} {e['Action']:<14} {e['Actor'][:12]}  {extra}")


@provenance.command()
@click.option("--dir", "directory", default="", help="check a copied provenance directory offline "
              "(lifecycle.log, lifecycle.head) instead of asking the daemon")
@click.option("--pub", default="", help="the host's Ed25519 public key (PEM); default DIR/lifecycle.pub")
@click.pass_context
def verify(ctx: click.Context, directory: str, pub: str) -> None:
    """Check the log's chain, signatures and head; name the first bad entry."""
    if directory:
        from pathlib import Path

        from dockyard_provenance.journal import load_public
        from dockyard_provenance.journal import verify as check

        verdict = check(Path(directory), load_public(Path(pub)) if pub else None).as_json()
    else:
        verdict = _client(ctx).get("/dockyard/v1/provenance/verify")
    if verdict["OK"]:
        click.echo(f"lifecycle log OK: {verdict['Entries']} entries, last {verdict['LastSeq']}")
        return
    click.echo(f"lifecycle log BROKEN: {verdict['Problem']}", err=True)
    sys.exit(1)


@provenance.command()
@click.argument("image")
@click.pass_context
def attestations(ctx: click.Context, image: str) -> None:
    """The build attestations kept for IMAGE (in-toto statements, verified)."""
    doc = _client(ctx).get("/dockyard/v1/provenance/attestations", image=image)
    click.echo(json.dumps(doc, indent=2))
