"""``dockyard run`` and ``dockyard create`` (the same request sequence as the docker CLI: create →
attach → wait → start, see ``attach-and-streams.md`` §4). The hijacked stream and the session
on it are ``dockyard.client``'s, shared with ``exec``, ``start -a`` and compose."""

from __future__ import annotations

import json
import threading
from typing import Any

import click

from dockyard.cli.output import client_of, run_api


# ---------------------------------------------------------------------------- create body
def _pairs(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def _duration_ns(text: str | None) -> int:
    if not text:
        return 0
    units = {"ns": 1, "us": 1_000, "ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
    for suffix in ("ns", "us", "ms", "s", "m", "h"):
        if text.endswith(suffix) and text[: -len(suffix)].replace(".", "", 1).isdigit():
            return int(float(text[: -len(suffix)]) * units[suffix])
    raise click.BadParameter(f"invalid duration {text!r}")


def _bytes(text: str | None) -> int:
    if not text:
        return 0
    t = text.strip().lower().rstrip("b")
    mult = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}
    if t and t[-1] in mult:
        return int(float(t[:-1]) * mult[t[-1]])
    return int(t)


def _ports(values: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, list[dict[str, str]]]]:
    exposed: dict[str, Any] = {}
    bindings: dict[str, list[dict[str, str]]] = {}
    for spec in values:
        parts = spec.split(":")
        cport = parts[-1]
        if "/" not in cport:
            cport += "/tcp"
        ip, hport = ("", "")
        if len(parts) == 3:
            ip, hport = parts[0], parts[1]
        elif len(parts) == 2:
            hport = parts[0]
        exposed[cport] = {}
        bindings.setdefault(cport, []).append({"HostIp": ip, "HostPort": hport})
    return exposed, bindings


def create_body(o: dict[str, Any], image: str, command: tuple[str, ...]) -> dict[str, Any]:
    exposed, bindings = _ports(o["publish"])
    restart = o["restart"] or "no"
    rname, _, rcount = restart.partition(":")
    body: dict[str, Any] = {
        "Image": image, "Cmd": list(command) or None, "Env": list(o["env"]) or None,
        "Labels": _pairs(o["label"]), "Tty": o["tty"], "OpenStdin": o["interactive"],
        "StdinOnce": o["interactive"], "AttachStdin": o["interactive"],
        "AttachStdout": not o.get("detach"), "AttachStderr": not o.get("detach"),
        "WorkingDir": o["workdir"] or "", "User": o["user"] or "", "ExposedPorts": exposed or None,
        "Entrypoint": [o["entrypoint"]] if o["entrypoint"] is not None else None,
        "Hostname": o["hostname"] or "",
        "HostConfig": {
            "AutoRemove": o["rm"], "Binds": list(o["volume"]) or None, "PortBindings": bindings or None,
            "NetworkMode": o["network"] or "default",
            "RestartPolicy": {"Name": rname, "MaximumRetryCount": int(rcount or 0)},
            "Memory": _bytes(o["memory"]), "NanoCpus": int(float(o["cpus"] or 0) * 1e9),
            "Privileged": o["privileged"], "Init": o["init"] or None, "Runtime": o["runtime"] or "",
        },
    }
    if o["health_cmd"]:
        body["Healthcheck"] = {"Test": ["CMD-SHELL", o["health_cmd"]], "Interval": _duration_ns(o["health_interval"]),
                               "Timeout": _duration_ns(o["health_timeout"]), "Retries": o["health_retries"] or 0,
                               "StartPeriod": _duration_ns(o["health_start_period"])}
    if o["stop_signal"]:
        body["StopSignal"] = o["stop_signal"]
    return body


def create_options(f: Any) -> Any:
    opts = [
        click.option("--name", default=None, help="container name"),
        click.option("-e", "--env", multiple=True, help="KEY=value (repeatable)"),
        click.option("-l", "--label", multiple=True, help="key=value (repeatable)"),
        click.option("-i", "--interactive", is_flag=True, help="keep stdin open"),
        click.option("-t", "--tty", is_flag=True, help="allocate a pseudo-terminal"),
        click.option("-w", "--workdir", default=None),
        click.option("-u", "--user", default=None),
        click.option("-p", "--publish", multiple=True, help="[ip:]host:container[/proto]"),
        click.option("-v", "--volume", multiple=True, help="name-or-path:/dest[:ro]"),
        click.option("--network", default=None),
        click.option("--restart", default=None, help="no | on-failure[:N] | always | unless-stopped"),
        click.option("-m", "--memory", default=None, help="memory limit (e.g. 64m)"),
        click.option("--cpus", default=None),
        click.option("--entrypoint", default=None),
        click.option("-h", "--hostname", default=None),
        click.option("--privileged", is_flag=True),
        click.option("--init", is_flag=True),
        click.option("--runtime", default=None),
        click.option("--stop-signal", default=None),
        click.option("--health-cmd", default=None),
        click.option("--health-interval", default=None),
        click.option("--health-timeout", default=None),
        click.option("--health-retries", type=int, default=None),
        click.option("--health-start-period", default=None),
        click.option("--rm", is_flag=True, help="remove the container when it exits"),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def do_create(ctx: click.Context, o: dict[str, Any], image: str, command: tuple[str, ...]) -> str:
    from dockyard.errors import NotFound

    client = client_of(ctx)
    body = create_body(o, image, command)
    params = {"name": o["name"]} if o["name"] else {}
    try:
        res = client.post("/containers/create", body, **params)
    except NotFound as exc:
        if "image" not in str(exc).lower():
            raise click.ClickException(str(exc)) from exc
        click.echo(f"Unable to find image '{image}' locally", err=True)
        name, _, tag = image.partition(":")
        try:
            for msg in client.stream_json("POST", "/images/create", {"fromImage": name, "tag": tag or "latest"}):
                if msg.get("error"):
                    raise click.ClickException(msg["error"])
        except NotFound as exc2:
            raise click.ClickException(str(exc2)) from exc2
        res = run_api(lambda: client.post("/containers/create", body, **params))
    except click.ClickException:
        raise
    except Exception as exc:  # noqa: BLE001 - typed errors from the client
        raise click.ClickException(str(exc)) from exc
    return str(res["Id"])


@click.command(context_settings={"allow_interspersed_args": False})
@create_options
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def create(ctx: click.Context, image: str, command: tuple[str, ...], **o: Any) -> None:
    """Create a container (prints its ID)."""
    click.echo(do_create(ctx, o, image, command))


@click.command(context_settings={"allow_interspersed_args": False})
@create_options
@click.option("-d", "--detach", is_flag=True, help="run in the background and print the ID")
@click.argument("image")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def run(ctx: click.Context, image: str, command: tuple[str, ...], **o: Any) -> None:
    """Create and start a container; without -d, stream its output and exit with its code."""
    client = client_of(ctx)
    cid = do_create(ctx, o, image, command)
    if o["detach"]:
        run_api(lambda: client.post(f"/containers/{cid}/start"))
        click.echo(cid)
        return
    from dockyard.client import attach_session

    conn = run_api(lambda: client.hijack(f"/containers/{cid}/attach", {
        "stream": 1, "stdout": 1, "stderr": 1, "stdin": 1 if o["interactive"] else None}))
    result: dict[str, Any] = {}

    def waiter() -> None:
        try:
            resp = client.request("POST", f"/containers/{cid}/wait",
                                  {"condition": "removed" if o["rm"] else "next-exit"}, timeout=None)
            result.update(json.loads(resp.read() or b"{}"))
        except Exception as exc:  # noqa: BLE001
            result["Error"] = {"Message": str(exc)}

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    try:
        client.post(f"/containers/{cid}/start")
    except Exception as exc:  # noqa: BLE001
        conn.close()
        click.echo(f"Error: {exc}", err=True)
        if o["rm"]:
            try:
                client.delete(f"/containers/{cid}", force=1)
            except Exception:  # noqa: BLE001
                pass
        ctx.exit(125)
    attach_session(conn, o["tty"], o["interactive"])
    t.join()
    if result.get("Error"):
        click.echo(f"Error: {result['Error'].get('Message')}", err=True)
        ctx.exit(125)
    ctx.exit(int(result.get("StatusCode", 0)))
