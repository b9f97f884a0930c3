"""Container commands of ``dockyard``: start, stop, kill, rm, ps, logs, exec, inspect, wait,
pause, unpause, rename, top, stats, cp — thin clients of the daemon's ``/containers`` routes."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import click

from dockyard.cli.output import client_of, print_json, print_table, run_api


def _each(ctx: click.Context, names: tuple[str, ...], call: Any) -> None:
    failed = False
    for n in names:
        try:
            call(n)
            click.echo(n)
        except Exception as exc:  # noqa: BLE001 - typed client errors
            click.echo(f"Error: {exc}", err=True)
            failed = True
    if failed:
        ctx.exit(1)


@click.command()
@click.option("-a", "--attach", is_flag=True, help="attach stdout/stderr and exit with the container's code")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def start(ctx: click.Context, containers: tuple[str, ...], attach: bool) -> None:
    """Start one or more containers."""
    client = client_of(ctx)
    if attach:
        from dockyard.client import attach_session

        info = run_api(lambda: client.get(f"/containers/{containers[0]}/json"))
        cid = info["Id"]
        conn = run_api(lambda: client.hijack(f"/containers/{cid}/attach",
                                             {"stream": 1, "stdout": 1, "stderr": 1}))
        result: dict[str, Any] = {}

        def waiter() -> None:
            resp = client.request("POST", f"/containers/{cid}/wait", {"condition": "next-exit"}, timeout=None)
            result.update(json.loads(resp.read() or b"{}"))

        t = threading.Thread(target=waiter, daemon=True)
        t.start()
        run_api(lambda: client.post(f"/containers/{cid}/start"))
        attach_session(conn, info["Config"]["Tty"], False)
        t.join()
        ctx.exit(int(result.get("StatusCode", 0)))
    _each(ctx, containers, lambda n: client.post(f"/containers/{n}/start"))


@click.command()
@click.option("-t", "--time", "timeout", type=int, default=None, help="seconds before SIGKILL")
@click.option("-s", "--signal", default=None)
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def stop(ctx: click.Context, containers: tuple[str, ...], timeout: int | None, signal: str | None) -> None:
    """Stop running containers (stop signal, then SIGKILL)."""
    from dockyard.errors import NotModified

    client = client_of(ctx)

    def one(n: str) -> None:
        try:
            client.request("POST", f"/containers/{n}/stop", {"t": timeout, "signal": signal}, timeout=None).read()
        except NotModified:
            pass

    _each(ctx, containers, one)


@click.command()
@click.option("-s", "--signal", default=None, help="signal name or number (default KILL)")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def kill(ctx: click.Context, containers: tuple[str, ...], signal: str | None) -> None:
    """Send a signal to running containers."""
    client = client_of(ctx)
    _each(ctx, containers, lambda n: client.post(f"/containers/{n}/kill", signal=signal))


@click.command()
@click.option("-f", "--force", is_flag=True)
@click.option("-v", "--volumes", is_flag=True, help="remove anonymous volumes too")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, containers: tuple[str, ...], force: bool, volumes: bool) -> None:
    """Remove containers."""
    client = client_of(ctx)
    _each(ctx, containers, lambda n: client.delete(f"/containers/{n}", force=int(force), v=int(volumes)))


@click.command()
@click.option("-a", "--all", "show_all", is_flag=True)
@click.option("-q", "--quiet", is_flag=True)
@click.option("-f", "--filter", "filters", multiple=True, help="key=value (repeatable)")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def ps(ctx: click.Context, show_all: bool, quiet: bool, filters: tuple[str, ...], fmt: str) -> None:
    """List containers."""
    flt: dict[str, dict[str, bool]] = {}
    for item in filters:
        k, _, v = item.partition("=")
        flt.setdefault(k, {})[v] = True
    client = client_of(ctx)
    rows = run_api(lambda: client.get("/containers/json", all=int(show_all),
                                      filters=json.dumps(flt) if flt else None))
    if quiet:
        for r in rows:
            click.echo(r["Id"][:12])
        return
    if fmt == "json":
        print_json(rows)
        return
    print_table(["CONTAINER ID", "IMAGE", "COMMAND", "STATUS", "NAMES"],
                [[r["Id"][:12], r["Image"], json.dumps(r["Command"][:30]), r["Status"],
                  ",".join(n.lstrip("/") for n in r["Names"])] for r in rows])


@click.command()
@click.option("-f", "--follow", is_flag=True)
@click.option("-n", "--tail", default="all")
@click.option("-t", "--timestamps", is_flag=True)
@click.option("--since", default=None, help="unix time or RFC 3339")
@click.option("--until", default=None)
@click.argument("container")
@click.pass_context
def logs(ctx: click.Context, container: str, follow: bool, tail: str, timestamps: bool, since: str | None,
         until: str | None) -> None:
    """Show a container's output."""
    from dockyard.client import copy_output

    client = client_of(ctx)
    info = run_api(lambda: client.get(f"/containers/{container}/json"))
    resp = run_api(lambda: client.request("GET", f"/containers/{info['Id']}/logs", {
        "stdout": 1, "stderr": 1, "follow": int(follow), "tail": tail, "timestamps": int(timestamps),
        "since": since, "until": until}, timeout=None))
    try:
        run_api(lambda: copy_output(resp.read1, info["Config"]["Tty"]))
    except KeyboardInterrupt:
        pass
    finally:
        resp.close()


@click.command(name="exec", context_settings={"allow_interspersed_args": False})
@click.option("-i", "--interactive", is_flag=True)
@click.option("-t", "--tty", is_flag=True)
@click.option("-d", "--detach", is_flag=True)
@click.option("-e", "--env", multiple=True)
@click.option("-u", "--user", default="")
@click.option("-w", "--workdir", default="")
@click.argument("container")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def exec_(ctx: click.Context, container: str, command: tuple[str, ...], interactive: bool, tty: bool,
          detach: bool, env: tuple[str, ...], user: str, workdir: str) -> None:
    """Run a command in a running container; exits with its code."""
    from dockyard.client import attach_session

    client = client_of(ctx)
    body = {"User": user, "Privileged": False, "Tty": tty, "AttachStdin": interactive and not detach,
            "AttachStdout": not detach, "AttachStderr": not detach, "Detach": detach, "DetachKeys": "",
            "Env": list(env) or None, "WorkingDir": workdir, "Cmd": list(command)}
    eid = run_api(lambda: client.post(f"/containers/{container}/exec", body))["Id"]
    if detach:
        run_api(lambda: client.post(f"/exec/{eid}/start", {"Detach": True, "Tty": tty}))
        return
    conn = run_api(lambda: client.hijack(f"/exec/{eid}/start", body={"Detach": False, "Tty": tty}))
    attach_session(conn, tty, interactive)
    ctx.exit(int(run_api(lambda: client.get(f"/exec/{eid}/json")).get("ExitCode") or 0))


@click.command()
@click.option("-f", "--format", "template", default=None, help="a dotted path such as State.Status")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def inspect(ctx: click.Context, containers: tuple[str, ...], template: str | None) -> None:
    """Show containers' details as JSON (or one field with -f State.Status)."""
    client = client_of(ctx)
    out = [run_api(lambda n=n: client.get(f"/containers/{n}/json")) for n in containers]
    if template:
        path = template.strip("{} .").split(".")
        for item in out:
            v: Any = item
            for p in path:
                v = v.get(p) if isinstance(v, dict) else None
            click.echo(json.dumps(v) if isinstance(v, (dict, list)) else ("" if v is None else v))
        return
    click.echo(json.dumps(out, indent=4))


@click.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def wait(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Block until containers stop; print their exit codes."""
    client = client_of(ctx)
    for n in containers:
        resp = run_api(lambda n=n: client.request("POST", f"/containers/{n}/wait", {}, timeout=None))
        click.echo(json.loads(resp.read()).get("StatusCode"))


@click.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def pause(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Freeze every process of containers."""
    client = client_of(ctx)
    _each(ctx, containers, lambda n: client.post(f"/containers/{n}/pause"))


@click.command()
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def unpause(ctx: click.Context, containers: tuple[str, ...]) -> None:
    """Thaw paused containers."""
    client = client_of(ctx)
    _each(ctx, containers, lambda n: client.post(f"/containers/{n}/unpause"))


@click.command()
@click.argument("container")
@click.argument("new_name")
@click.pass_context
def rename(ctx: click.Context, container: str, new_name: str) -> None:
    """Rename a container."""
    client = client_of(ctx)
    run_api(lambda: client.post(f"/containers/{container}/rename", name=new_name))


@click.command()
@click.argument("container")
@click.argument("ps_args", nargs=-1)
@click.pass_context
def top(ctx: click.Context, container: str, ps_args: tuple[str, ...]) -> None:
    """Processes of a running container."""
    client = client_of(ctx)
    res = run_api(lambda: client.get(f"/containers/{container}/top",
                                     ps_args=" ".join(ps_args) if ps_args else None))
    print_table(res["Titles"], res["Processes"])


def _cpu_percent(s: dict[str, Any]) -> float:
    cpu, pre = s.get("cpu_stats") or {}, s.get("precpu_stats") or {}
    d_cpu = (cpu.get("cpu_usage") or {}).get("total_usage", 0) - (pre.get("cpu_usage") or {}).get("total_usage", 0)
    d_sys = cpu.get("system_cpu_usage", 0) - pre.get("system_cpu_usage", 0)
    if d_cpu > 0 and d_sys > 0:
        return d_cpu / d_sys * (cpu.get("online_cpus") or 1) * 100.0
    return 0.0


@click.command()
@click.option("--no-stream", is_flag=True, help="one sample and exit")
@click.argument("containers", nargs=-1, required=True)
@click.pass_context
def stats(ctx: click.Context, containers: tuple[str, ...], no_stream: bool) -> None:
    """Resource usage of containers."""
    from dockyard.client import bytes_size

    client = client_of(ctx)
    while True:
        rows = []
        for n in containers:
            s = run_api(lambda n=n: client.get(f"/containers/{n}/stats", stream=0))
            mem = s.get("memory_stats") or {}
            rows.append([s.get("id", "")[:12], s.get("name", "/")[1:], f"{_cpu_percent(s):.2f}%",
                         f"{bytes_size(mem.get('usage', 0))} / {bytes_size(mem.get('limit', 0))}",
                         (s.get("pids_stats") or {}).get("current", 0)])
        print_table(["CONTAINER ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"], rows)
        if no_stream:
            return
        time.sleep(1)


@click.command()
@click.argument("src")
@click.argument("dest")
@click.pass_context
def cp(ctx: click.Context, src: str, dest: str) -> None:
    """Copy files between a container and the host: ``cp C:/path host`` or ``cp host C:/path``."""
    import io
    import tarfile

    from dockyard.tarsafe import extract

    client = client_of(ctx)
    if ":" in src and not src.startswith("/") and not src.startswith("."):
        container, _, path = src.partition(":")
        resp = run_api(lambda: client.request("GET", f"/containers/{container}/archive", {"path": path},
                                              timeout=None))
        data = resp.read()
        if dest == "-":
            sys.stdout.buffer.write(data)
            return
        import tempfile

        target = dest
        rename_to = None
        if not os.path.isdir(dest):
            target = os.path.dirname(os.path.abspath(dest)) or "."
            rename_to = os.path.basename(dest)
        with tempfile.NamedTemporaryFile(suffix=".tar") as tmp:
            tmp.write(data)
            tmp.flush()
            if rename_to is None:
                extract(tmp.name, target)
            else:
                with tempfile.TemporaryDirectory(dir=target) as stage:
                    extract(tmp.name, stage)
                    (only,) = os.listdir(stage)
                    os.replace(os.path.join(stage, only), os.path.join(target, rename_to))
        return
    container, _, path = dest.partition(":")
    if not path:
        raise click.UsageError("one of SRC and DEST must be CONTAINER:PATH")
    from dockyard.errors import NotFound

    arcname = os.path.basename(src.rstrip("/"))
    dest_dir = path
    try:
        stat_resp = client.request("HEAD", f"/containers/{container}/archive", {"path": path})
        stat_resp.read()
        header = stat_resp.getheader("X-Docker-Container-Path-Stat") or ""
        import base64

        st = json.loads(base64.b64decode(header)) if header else {}
        if not (st.get("mode", 0) & (1 << 31)):
            dest_dir, arcname = os.path.dirname(path.rstrip("/")) or "/", os.path.basename(path.rstrip("/"))
    except NotFound:
        dest_dir, arcname = os.path.dirname(path.rstrip("/")) or "/", os.path.basename(path.rstrip("/"))
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(src, arcname=arcname)
    run_api(lambda: client.request("PUT", f"/containers/{container}/archive",
                                   {"path": dest_dir, "noOverwriteDirNonDir": "true"}, body=buf.getvalue()).read())
