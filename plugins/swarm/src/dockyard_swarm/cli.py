"""``dockyard swarm``: Swarm classic's commands (entry point ``dockyard.cli``: ``swarm``).

- ``manage -H tcp://ADDR:PORT [TLS flags] [--strategy] [--filter] [--replication --advertise
  ADDR:PORT] URL``: runs ``dockyardd`` in the role ``manager`` (one binary, two roles);
- ``join --advertise ADDR:PORT URL``: the heartbeat of an engine started without
  ``--cluster-advertise`` (runs until interrupted);
- ``list URL``: the nodes' addresses, one per line, as ``swarm list`` printed them;
- ``etcd start|stop``: a local etcd (Debian's ``etcd-server``) for demos and trials.

Heavy imports happen inside the command bodies.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

T = TypeVar("T")


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


def _with_store(url: str, work: Callable[[Any], Awaitable[T]], opts: tuple[str, ...] = ()) -> T:
    """Run ``work(store)`` on a throwaway kernel connected to the store ``url``."""
    import asyncio

    from dockyard.config import Config
    from dockyard.errors import DockyardError
    from dockyard.kernel import Kernel

    async def main(root: str) -> T:
        config = Config(values={"data-root": f"{root}/d", "exec-root": f"{root}/r", "cluster-store": url,
                                "cluster-opts": list(opts)})
        kernel = Kernel.build(config)
        try:
            return await work(await kernel.cluster_store())
        finally:
            await kernel.stop()

    with tempfile.TemporaryDirectory(prefix="dockyard-swarm-") as root:
        try:
            return asyncio.run(main(root))
        except DockyardError as exc:
            _fail(f"Error: {exc}")
            raise AssertionError("unreachable") from None


@click.group(name="swarm", help="Swarm classic: a manager in front of a pool of engines, state in etcd.")
def swarm() -> None:
    pass


STORE_OPT = click.option("--cluster-store-opt", "store_opts", multiple=True, metavar="KEY=VALUE",
                         help="cluster store option (kv.cacertfile, kv.certfile, kv.keyfile: TLS to etcd)")


@swarm.command(name="list", help="List the nodes of a cluster (ADDR:PORT, one per line).")
@click.option("--verbose", "-v", is_flag=True, help="Also each node's name and health.")
@STORE_OPT
@click.argument("discovery")
def list_nodes(verbose: bool, store_opts: tuple[str, ...], discovery: str) -> None:
    from dockyard_swarm.membership import NODES

    async def work(store: Any) -> list[dict[str, Any]]:
        return [kv.json() for kv in await store.list(NODES)]

    import time

    for record in _with_store(discovery, work, store_opts):
        if not verbose:
            click.echo(record.get("addr", ""))
            continue
        late = time.time() - float(record.get("heartbeat") or 0)
        healthy = late <= 2 * float(record.get("interval") or 2)
        click.echo(f"{record.get('name', '')}\t{record.get('addr', '')}\t{'Healthy' if healthy else 'Unhealthy'}")


@swarm.command(help="Keep an engine's node record alive (for an engine started without --cluster-advertise).")
@click.option("--advertise", "advertise", required=True, help="ADDR:PORT the managers reach the engine at")
@click.option("-H", "--host", "engine", default=None,
              help="the engine's own API to read its /info (default: DOCKYARD_HOST, DOCKER_HOST, the local socket)")
@click.option("--heartbeat", default=None, help="seconds between heartbeats (default 2)")
@click.option("--ttl", default=None, help="seconds after which a silent node is dropped (default 6)")
@click.option("--name", default=None, help="node name (default: the engine's Name)")
@STORE_OPT
@click.argument("discovery")
def join(advertise: str, engine: str | None, heartbeat: str | None, ttl: str | None, name: str | None,
         store_opts: tuple[str, ...], discovery: str) -> None:
    import asyncio
    import signal

    from dockyard.client import Client, resolve_address
    from dockyard.config import Config
    from dockyard_swarm.membership import discovery_settings
    from dockyard_swarm.membership_agent import (
        Heartbeat,
        engine_from_info,
        labels_from_info,
        resolve_advertise,
    )

    opts = tuple(f"discovery.{k}={v}" for k, v in (("heartbeat", heartbeat), ("ttl", ttl)) if v)
    try:
        interval, ttl_s = discovery_settings(Config(values={"cluster-opts": list(opts)}))
        addr = resolve_advertise(advertise)
    except Exception as exc:  # noqa: BLE001 - InvalidArgument: a usage error
        _fail(f"Error: {exc}")
    client = Client(resolve_address(engine, dict(os.environ)), timeout=10)

    def read_info() -> dict[str, Any]:
        return dict(client.get("/info"))

    info = read_info()
    node = name or str(info.get("Name") or "")

    async def describe() -> tuple[dict[str, str], dict[str, Any]]:
        fresh = await asyncio.to_thread(read_info)
        return labels_from_info(fresh), engine_from_info(fresh)

    async def work(store: Any) -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.ensure_future(Heartbeat(store, node, addr, interval, ttl_s, describe).run())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        click.echo(f"joined {discovery} as {node} ({addr}), heartbeat {interval:g}s, ttl {ttl_s:g}s", err=True)
        try:
            await task
        except asyncio.CancelledError:
            pass

    _with_store(discovery, work, store_opts)


@swarm.command(help="Run a swarm manager: dockyardd in the role manager, serving the Docker API.")
@click.option("-H", "--host", "hosts", multiple=True, required=True, help="listen on tcp://ADDR:PORT or unix://PATH")
@click.option("--tlsverify", is_flag=True, default=False, help="mutual TLS: clients need a certificate of --tlscacert")
@click.option("--tls", is_flag=True, default=False, help="TLS without verifying clients")
@click.option("--tlscacert", default=None)
@click.option("--tlscert", default=None)
@click.option("--tlskey", default=None)
@click.option("--strategy", default=None, help="placement strategy: spread (default), binpack, random")
@click.option("--filter", "filters", multiple=True, help="enabled filter (repeatable; default: all)")
@click.option("--replication", is_flag=True, default=False, help="replicate: one leader elected through the store")
@click.option("--replication-ttl", type=int, default=None, help="seconds before a dead leader is replaced (default 4)")
@click.option("--advertise", default=None, help="ADDR:PORT this manager is reached at by its replicas")
@click.option("--data-root", default="/var/lib/dockyard-swarm", show_default=True)
@click.option("--exec-root", default="/run/dockyard-swarm", show_default=True)
@click.option("--cluster-opt", "cluster_opts", multiple=True, help="cluster store option KEY=VALUE")
@click.option("--log-level", default=None)
@click.option("--dry-run", is_flag=True, hidden=True, help="print the dockyardd command and its settings")
@click.argument("discovery")
def manage(hosts: tuple[str, ...], tlsverify: bool, tls: bool, tlscacert: str | None, tlscert: str | None,
           tlskey: str | None, strategy: str | None, filters: tuple[str, ...], replication: bool,
           replication_ttl: int | None, advertise: str | None, data_root: str, exec_root: str,
           cluster_opts: tuple[str, ...], log_level: str | None, dry_run: bool, discovery: str) -> None:
    if replication and not advertise:
        _fail("Error: --replication needs --advertise ADDR:PORT (the address the other managers reach this one at)")
    settings: dict[str, Any] = {"role": "manager", "cluster-store": discovery}
    if advertise:
        settings["cluster-advertise"] = advertise
    if replication:
        settings["replication"] = True
    if replication_ttl is not None:
        settings["replication-ttl"] = replication_ttl
    if strategy:
        settings["strategy"] = strategy
    if filters:
        settings["filters"] = list(filters)
    if cluster_opts:
        settings["cluster-opts"] = list(cluster_opts)
    config_file = Path(exec_root) / "swarm-manage.json"
    argv = [_dockyardd(), "--config-file", str(config_file), "--data-root", data_root, "--exec-root", exec_root]
    for h in hosts:
        argv += ["-H", h]
    if tlsverify:
        argv.append("--tlsverify")
    elif tls:
        argv.append("--tls")
    for flag, value in (("--tlscacert", tlscacert), ("--tlscert", tlscert), ("--tlskey", tlskey),
                        ("--log-level", log_level)):
        if value:
            argv += [flag, value]
    if dry_run:
        click.echo(json.dumps({"argv": argv, "settings": settings}, indent=2))
        return
    config_file.parent.mkdir(parents=True, exist_ok=True)
    config_file.write_text(json.dumps(settings, indent=2) + "\n")
    os.execv(argv[0], argv)


def _dockyardd() -> str:
    import shutil

    beside = Path(sys.executable).with_name("dockyardd")
    if beside.exists():
        return str(beside)
    found = shutil.which("dockyardd")
    if found is None:
        _fail("Error: dockyardd not found (pip install dockyard-core)")
    return str(found)


@swarm.group(help="A local etcd (Debian's etcd-server) to hold a cluster's state, for demos and trials.")
def etcd() -> None:
    pass


@etcd.command(name="start", help="Start etcd in the background on ADDR:PORT; prints the cluster-store URL.")
@click.option("--data-dir", required=True, help="etcd's data directory (its pid and log files go beside it)")
@click.option("--listen", default="127.0.0.1:2379", show_default=True, help="client ADDR:PORT")
@click.option("--peer-port", type=int, default=None, help="peer port (default: client port + 1)")
@click.option("--prefix", default="swarm", show_default=True, help="key prefix of the printed URL")
@click.option("--tlscacert", default=None, help="TLS: clients need a certificate this CA signed")
@click.option("--tlscert", default=None, help="TLS: etcd's certificate (naming the --listen address)")
@click.option("--tlskey", default=None, help="TLS: etcd's key")
def etcd_start(data_dir: str, listen: str, peer_port: int | None, prefix: str, tlscacert: str | None,
               tlscert: str | None, tlskey: str | None) -> None:
    from dockyard_swarm import etcd_local

    given = [v for v in (tlscacert, tlscert, tlskey) if v]
    if given and len(given) != 3:
        _fail("Error: --tlscacert, --tlscert and --tlskey go together")
    try:
        url = etcd_local.start(Path(data_dir), listen, peer_port,
                               (tlscacert, tlscert, tlskey) if given else None)  # type: ignore[arg-type]
    except (OSError, RuntimeError) as exc:
        _fail(f"Error: {exc}")
    click.echo(f"{url}/{prefix}")


@etcd.command(name="stop", help="Stop the etcd started with this --data-dir and delete its files.")
@click.option("--data-dir", required=True)
@click.option("--keep", is_flag=True, help="keep the data directory")
def etcd_stop(data_dir: str, keep: bool) -> None:
    from dockyard_swarm import etcd_local

    etcd_local.stop(Path(data_dir), remove=not keep)
