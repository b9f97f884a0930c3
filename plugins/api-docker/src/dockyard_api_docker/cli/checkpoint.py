"""``dockyard container checkpoint --export FILE`` and ``dockyard container restore --import
FILE``: portable checkpoint archives (podman's layout), clients of the daemon's
``/dockyard/v1/containers/...`` routes. ``docker checkpoint create|ls|rm`` and ``docker start
--checkpoint`` are Docker's own commands for checkpoints kept by the daemon."""

from __future__ import annotations

import os
import shutil

import click

from dockyard.cli.output import client_of, run_api


@click.group()
def container() -> None:
    """Container commands that Docker's CLI lacks: portable checkpoints."""


@container.command()
@click.argument("container_ref", metavar="CONTAINER")
@click.option("-e", "--export", "export", required=True, metavar="FILE",
              help="write the checkpoint archive (podman's layout, gzip) to FILE")
@click.option("-R", "--leave-running", is_flag=True, help="keep the container running after the dump")
@click.option("--tcp-established/--no-tcp-established", default=True, show_default=True,
              help="checkpoint established TCP connections")
@click.pass_context
def checkpoint(ctx: click.Context, container_ref: str, export: str, leave_running: bool,
               tcp_established: bool) -> None:
    """Checkpoint CONTAINER into a portable archive (`podman container restore --import` reads it)."""
    client = client_of(ctx)
    params = {"leaveRunning": "1" if leave_running else "0", "tcpEstablished": "1" if tcp_established else "0"}
    resp = run_api(lambda: client.request("POST", f"/dockyard/v1/containers/{container_ref}/checkpoint/export",
                                          params, timeout=None))
    tmp = f"{export}.part"
    try:
        with open(tmp, "wb") as out:
            shutil.copyfileobj(resp, out, 1 << 20)
        os.replace(tmp, export)
    finally:
        resp.close()
        if os.path.exists(tmp):
            os.unlink(tmp)
    click.echo(container_ref)


@container.command()
@click.option("-i", "--import", "import_", required=True, metavar="FILE",
              help="a checkpoint archive (ours or `podman container checkpoint --export`'s)")
@click.option("-n", "--name", default="", help="name of the restored container (default: the archive's)")
@click.option("--ignore-static-ip", is_flag=True, help="give the container new addresses, not the archive's")
@click.option("--ignore-static-mac", is_flag=True, help="give the container new MAC addresses")
@click.option("--ignore-volumes", is_flag=True, help="do not restore the archive's named volumes")
@click.pass_context
def restore(ctx: click.Context, import_: str, name: str, ignore_static_ip: bool, ignore_static_mac: bool,
            ignore_volumes: bool) -> None:
    """Restore a container from a portable checkpoint archive; prints its ID."""
    client = client_of(ctx)
    params = {"name": name, "ignoreStaticIP": "1" if ignore_static_ip else "0",
              "ignoreStaticMAC": "1" if ignore_static_mac else "0", "ignoreVolumes": "1" if ignore_volumes else "0"}
    with open(import_, "rb") as fh:
        resp = run_api(lambda: client.request("POST", "/dockyard/v1/containers/restore", params, body=fh,
                                              timeout=None))
    from dockyard.client import read_json

    click.echo(read_json(resp)["Id"])
