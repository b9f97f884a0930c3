"""``dockyard migrate CONTAINER HOST``: move a running container from the daemon of ``-H``
(or ``DOCKYARD_HOST``/``DOCKER_HOST``) to another engine, engine to engine.

``HOST`` is ``tcp://ADDR:PORT`` (TLS with the source's client material: a machine store's
hosts share one client certificate; ``--tlscacert/--tlscert/--tlskey`` or ``--cert-path`` for
others) or a machine name (its URL and certificates from the machines API of the local daemon,
as ``dockyard machine env`` prints them). Progress is rich on a terminal, one line per phase
otherwise; the last line gives frozen time, total time and bytes moved.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import click

UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def parse_size(text: str) -> int:
    """``128m``, ``1g``, ``4096`` (docker's RAMInBytes units)."""
    t = text.strip().lower().removesuffix("ib").removesuffix("b") if text.strip().lower() not in ("b",) else ""
    num = t.rstrip("kmg")
    unit = t[len(num):]
    try:
        return int(float(num) * UNITS[unit])
    except (ValueError, KeyError):
        raise click.BadParameter(f"not a size: {text}") from None


def _target(ctx: click.Context, host: str, source: Any, cert_path: str | None, ca: str | None, cert: str | None,
            key: str | None) -> Any:
    from dockyard.client import Client, resolve_address
    from dockyard.client.address import DaemonAddress, TlsFiles

    if "://" not in host and ":" not in host:  # a machine name: the machines API's URL and PEMs
        import atexit
        import shutil
        import tempfile

        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DOCKYARD_"))}
        doc = Client(resolve_address(None, env)).get(f"/dockyard/v1/machines/{host}/env")
        url = str(doc.get("URL") or "")
        if not url:
            raise click.ClickException(f"machine {host} has no engine URL")
        certs = tempfile.mkdtemp(prefix="dockyard-migrate-")
        atexit.register(shutil.rmtree, certs, True)
        for key, fname in (("CA", "ca.pem"), ("Cert", "cert.pem"), ("Key", "key.pem")):
            with open(os.path.join(certs, fname), "w", opener=lambda p, f: os.open(p, f, 0o600)) as fh:
                fh.write(str(doc.get(key) or ""))
        return Client(DaemonAddress.parse(url, tls=TlsFiles.from_dir(certs), verify=True))
    tls = source.address.tls
    if cert_path:
        tls = TlsFiles.from_dir(cert_path)
    if ca:
        tls = TlsFiles(ca=ca, cert=cert, key=key)
    return Client(DaemonAddress.parse(host, tls=tls, verify=tls is not None))


@click.command("migrate", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("container")
@click.argument("host")
@click.option("--mode", type=click.Choice(["auto", "stop-copy", "lazy"]), default="auto", show_default=True,
              help="memory by stop-and-copy, post-copy (lazy pages from the source), or chosen by memory size")
@click.option("--lazy-threshold", default="128m", show_default=True, metavar="SIZE",
              help="auto: lazy pages from this much resident memory")
@click.option("--migrator", default="", help="a migrator other than the target's default")
@click.option("--cert-path", default=None, help="the target's ca.pem, cert.pem, key.pem")
@click.option("--tlscacert", default=None)
@click.option("--tlscert", default=None)
@click.option("--tlskey", default=None)
@click.option("--json", "as_json", is_flag=True, help="print the API's JSON lines")
@click.pass_context
def migrate(ctx: click.Context, container: str, host: str, mode: str, lazy_threshold: str, migrator: str,
            cert_path: str | None, tlscacert: str | None, tlscert: str | None, tlskey: str | None,
            as_json: bool) -> None:
    """Move running CONTAINER to the engine at HOST (a machine name or tcp://ADDR:PORT)."""
    from dockyard.cli.output import run_api
    from dockyard.client import Client, resolve_address
    obj = ctx.find_root().obj
    explicit = obj.get("host") if isinstance(obj, dict) else None
    threshold = parse_size(lazy_threshold)
    source = run_api(lambda: Client(resolve_address(explicit), timeout=None))
    target = run_api(lambda: _target(ctx, host, source, cert_path, tlscacert, tlscert, tlskey))
    params = {"mode": mode, "lazy-threshold": threshold}
    ticket = run_api(lambda: target.post("/dockyard/v1/migrations", None, **params, **({"migrator": migrator} if migrator else {})))
    lines = run_api(lambda: source.stream_json("POST", f"/dockyard/v1/containers/{container}/migrate", params,
                                                body={"Ticket": ticket, "Mode": mode, "LazyThreshold": threshold}))
    from dockyard.errors import DockyardError

    view = _View(sys.stdout.isatty() and not as_json)
    error = None
    with view:
        try:
            docs = list(_each(lines, view, as_json))
        except DockyardError as exc:
            raise click.ClickException(str(exc)) from exc
        for doc in docs:
            if "Error" in doc:
                error = doc["Error"]
    if error:
        raise click.ClickException(error)


def _each(lines: Any, view: _View, as_json: bool) -> Any:
    import json

    for doc in lines:
        if as_json:
            click.echo(json.dumps(doc))
        if "Progress" in doc:
            view.progress(doc["Progress"])
        elif "Result" in doc:
            view.result(doc["Result"], as_json)
        elif "Error" in doc:
            yield doc


class _View:
    """Rich progress on a terminal, a line per phase otherwise."""

    def __init__(self, rich: bool) -> None:
        self.rich = rich
        self.phase = ""
        self.t0 = time.monotonic()
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> _View:
        if self.rich:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(TextColumn("{task.description:<9}"), BarColumn(), DownloadColumn(),
                                      TextColumn("frozen {task.fields[frozen]:>7}"), TimeElapsedColumn(),
                                      TextColumn("{task.fields[message]}"))
            self._progress.__enter__()
            self._task = self._progress.add_task("prepare", total=None, frozen="-", message="")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def progress(self, p: dict[str, Any]) -> None:
        frozen = f"{p.get('FrozenMs', 0):.0f} ms" if p.get("FrozenMs") else "-"
        if self._progress is not None:
            self._progress.update(self._task, description=p.get("Phase", ""), completed=p.get("Bytes", 0),
                                  frozen=frozen, message=p.get("Message", ""))
        elif p.get("Phase") != self.phase:
            self.phase = p.get("Phase", "")
            click.echo(f"{self.phase:<9} {p.get('Bytes', 0):>12} B  frozen {frozen:>8}  {p.get('Message', '')}")

    def result(self, r: dict[str, Any], quiet: bool) -> None:
        from dockyard.client.units import human_size

        if quiet:
            return
        click.echo(f"migrated: {str(r.get('Id', ''))[:12]} ({r.get('Mode')}): frozen {r.get('FrozenMs', 0):.0f} ms, "
                   f"total {r.get('TotalMs', 0):.0f} ms, {human_size(r.get('Bytes', 0))} moved")
