"""``dockyard compose``: the command group (entry point ``dockyard.cli``: ``compose``).

Heavy imports (yaml, rich) happen inside the command bodies.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click


class _Opts:
    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def _root_host(ctx: click.Context) -> str | None:
    obj = ctx.find_root().obj
    return obj.get("host") if isinstance(obj, dict) else None


def _load(ctx: click.Context, targets: list[str] | None = None, required: bool = True) -> Any:
    from dockyard_compose.errors import ComposeError
    from dockyard_compose.loader import LoadOptions, load

    o: _Opts = ctx.find_object(_Opts)
    try:
        return load(LoadOptions(files=list(o.files), project_directory=o.project_directory,
                                project_name=o.project_name, env_files=list(o.env_files),
                                profiles=list(o.profiles), targets=list(targets or [])))
    except ComposeError as exc:
        if not required and o.project_name and str(exc).startswith("no compose file found"):
            return None
        raise


def _compose(ctx: click.Context, targets: list[str] | None = None, required: bool = True) -> Any:
    from dockyard_compose.compose import Compose
    from dockyard_compose.engine import Engine
    from dockyard_compose.ui import Printer

    o: _Opts = ctx.find_object(_Opts)
    loaded = _load(ctx, targets, required)
    name = loaded.name if loaded is not None else o.project_name
    return Compose(Engine(_root_host(ctx)), loaded, name, Printer(quiet=o.quiet))


def _run(call: Callable[[], Any]) -> Any:
    from dockyard.errors import DockyardError

    try:
        return call()
    except DockyardError as exc:
        raise click.ClickException(str(exc)) from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-f", "--file", "files", multiple=True, metavar="FILE", help="compose file(s), merged in order")
@click.option("-p", "--project-name", help="project name (default: directory name, or 'name:' in the file)")
@click.option("--project-directory", type=click.Path(), help="working directory of the project")
@click.option("--env-file", "env_files", multiple=True, metavar="PATH", help="env file(s) instead of .env")
@click.option("--profile", "profiles", multiple=True, help="activate a profile (repeatable)")
@click.option("--quiet-progress", "quiet", is_flag=True, help="no progress lines on stderr")
@click.pass_context
def compose(ctx: click.Context, files: tuple[str, ...], project_name: str | None, project_directory: str | None,
            env_files: tuple[str, ...], profiles: tuple[str, ...], quiet: bool) -> None:
    """Define and run multi-container applications from compose files (through the Engine API;
    host from -H, else DOCKYARD_HOST, else DOCKER_HOST with docker's TLS variables)."""
    ctx.obj = _Opts(files=files, project_name=project_name, project_directory=project_directory,
                    env_files=env_files, profiles=profiles, quiet=quiet)


# -- config ---------------------------------------------------------------------------------------------


@compose.command()
@click.option("--services", is_flag=True, help="print the service names, one per line")
@click.option("--volumes", is_flag=True, help="print the volume names")
@click.option("--networks", is_flag=True, help="print the network names")
@click.option("--profiles", "list_profiles", is_flag=True, help="print the profile names")
@click.option("--images", is_flag=True, help="print the image names")
@click.option("--hash", "hash_", metavar="SERVICES", help="print the config hash of services ('*' for all)")
@click.option("-q", "--quiet", is_flag=True, help="only validate")
@click.option("--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="write to a file")
@click.pass_context
def config(ctx: click.Context, services: bool, volumes: bool, networks: bool, list_profiles: bool, images: bool,
           hash_: str | None, quiet: bool, fmt: str, output: str | None) -> None:
    """Validate the files and print the normalized, merged model."""
    import yaml

    from dockyard_compose import spec
    from dockyard_compose.project import config_hash, to_yaml_dict

    loaded = _run(lambda: _load(ctx))
    model = loaded.model
    if quiet:
        return
    lines: list[str] | None = None
    if services:
        lines = list(model.services)
    elif volumes:
        lines = list(model.volumes)
    elif networks:
        lines = list(model.networks)
    elif list_profiles:
        lines = sorted({p for s in [*model.services.values(), *loaded.disabled.values()] for p in s.profiles})
    elif images:
        lines = [spec.image_ref(loaded.name, n, s) for n, s in model.services.items()]
    elif hash_:
        wanted = list(model.services) if hash_ == "*" else hash_.split(",")
        lines = [f"{n} {config_hash(model.services[n])}" for n in wanted if n in model.services]
    if lines is not None:
        text = "\n".join(lines) + ("\n" if lines else "")
    else:
        data = to_yaml_dict(model)
        text = (json.dumps(data, indent=2) + "\n" if fmt == "json"
                else yaml.safe_dump(data, sort_keys=False, default_flow_style=False, allow_unicode=True))
    if output:
        with open(output, "w") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)


# -- up / down ------------------------------------------------------------------------------------------


def _scale(values: tuple[str, ...]) -> dict[str, int]:
    out = {}
    for v in values:
        name, sep, num = v.partition("=")
        if not sep or not num.isdigit():
            raise click.BadParameter(f"expected SERVICE=NUM, got {v!r}", param_hint="--scale")
        out[name] = int(num)
    return out


@compose.command()
@click.argument("services", nargs=-1)
@click.option("-d", "--detach", is_flag=True, help="run in the background")
@click.option("--build", is_flag=True, help="build images before starting")
@click.option("--no-build", is_flag=True, help="never build missing images")
@click.option("--pull", type=click.Choice(["always", "missing", "never"]), help="pull policy")
@click.option("--force-recreate", is_flag=True, help="recreate containers even if unchanged")
@click.option("--no-recreate", is_flag=True, help="never recreate existing containers")
@click.option("--no-deps", is_flag=True, help="do not start linked services")
@click.option("--no-start", is_flag=True, help="create but do not start")
@click.option("--remove-orphans", is_flag=True, help="remove containers of services not in the file")
@click.option("--scale", multiple=True, metavar="SERVICE=NUM", help="number of containers of a service")
@click.option("--wait", is_flag=True, help="wait for services to be running/healthy (implies -d)")
@click.option("--wait-timeout", type=float, default=120.0, show_default=True)
@click.option("-t", "--timeout", type=int, help="stop timeout in seconds")
@click.option("--abort-on-container-exit", is_flag=True, help="stop all containers when one exits")
@click.option("--exit-code-from", metavar="SERVICE", help="exit with this service's code (implies --abort-on-container-exit)")
@click.pass_context
def up(ctx: click.Context, services: tuple[str, ...], detach: bool, build: bool, no_build: bool,
       pull: str | None, force_recreate: bool, no_recreate: bool, no_deps: bool, no_start: bool,
       remove_orphans: bool, scale: tuple[str, ...], wait: bool, wait_timeout: float, timeout: int | None,
       abort_on_container_exit: bool, exit_code_from: str | None) -> None:
    """Create and start containers (converge: recreate only what changed)."""
    from dockyard_compose.compose import UpOptions

    if (wait or detach) and (abort_on_container_exit or exit_code_from):
        raise click.UsageError("--abort-on-container-exit/--exit-code-from need attached mode (no -d/--wait)")
    if force_recreate and no_recreate:
        raise click.UsageError("--force-recreate and --no-recreate are incompatible")
    c = _run(lambda: _compose(ctx, list(services)))
    opts = UpOptions(services=list(services), detach=detach or wait, build=build, no_build=no_build, pull=pull,
                     force_recreate=force_recreate, no_recreate=no_recreate, no_deps=no_deps, no_start=no_start,
                     remove_orphans=remove_orphans, scale=_scale(scale), wait=wait, wait_timeout=wait_timeout,
                     timeout=timeout, abort_on_exit=abort_on_container_exit, exit_code_from=exit_code_from)
    code = _run(lambda: c.up(opts))
    ctx.exit(code)


@compose.command()
@click.option("-v", "--volumes", is_flag=True, help="remove named volumes and anonymous ones")
@click.option("--rmi", type=click.Choice(["local", "all"]), help="remove images (local: built ones)")
@click.option("--remove-orphans", is_flag=True, help="also remove containers of services not in the file")
@click.option("-t", "--timeout", type=int, help="stop timeout in seconds")
@click.pass_context
def down(ctx: click.Context, volumes: bool, rmi: str | None, remove_orphans: bool, timeout: int | None) -> None:
    """Stop and remove containers, networks (and volumes, images)."""
    c = _run(lambda: _compose(ctx, required=False))
    _run(lambda: c.down(volumes=volumes, rmi=rmi, remove_orphans=remove_orphans, timeout=timeout))


# -- inspection -----------------------------------------------------------------------------------------


def _ports(c: dict[str, Any]) -> str:
    out = []
    for p in sorted(c.get("Ports") or [], key=lambda p: (p.get("PrivatePort", 0), p.get("IP", ""))):
        if p.get("PublicPort"):
            ip = p.get("IP") or "0.0.0.0"
            out.append(f"{ip}:{p['PublicPort']}->{p['PrivatePort']}/{p.get('Type', 'tcp')}")
        else:
            out.append(f"{p.get('PrivatePort')}/{p.get('Type', 'tcp')}")
    return ", ".join(dict.fromkeys(out))


def _command(c: dict[str, Any]) -> str:
    cmd = c.get("Command") or ""
    if isinstance(cmd, list):
        cmd = " ".join(cmd)
    return f'"{cmd[:20]}…"' if len(cmd) > 20 else f'"{cmd}"'


def _ago(ts: int | None) -> str:
    import time

    if not ts:
        return ""
    d = max(0, int(time.time() - ts))
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if d >= n:
            k = d // n
            return f"{k} {unit}{'s' if k > 1 else ''} ago"
    return f"{d} seconds ago"


@compose.command()
@click.argument("services", nargs=-1)
@click.option("-a", "--all", "all_", is_flag=True, help="show stopped containers too")
@click.option("-q", "--quiet", is_flag=True, help="only IDs")
@click.option("--services", "only_services", is_flag=True, help="only service names")
@click.option("--status", multiple=True, help="filter by state (running, exited...)")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def ps(ctx: click.Context, services: tuple[str, ...], all_: bool, quiet: bool, only_services: bool,
       status: tuple[str, ...], fmt: str) -> None:
    """List the project's containers."""
    from dockyard_compose import engine as E
    from dockyard_compose.compose import label, name_of

    c = _run(lambda: _compose(ctx, required=False))
    found = _run(lambda: c.containers(list(services) or None, all=all_ or bool(status), oneoff=None))
    if status:
        found = [x for x in found if x.get("State") in status]
    if quiet:
        for x in found:
            click.echo(x["Id"])
        return
    if only_services:
        for s in dict.fromkeys(label(x, E.L_SERVICE) for x in found):
            click.echo(s)
        return
    rows = [{"ID": x["Id"], "Name": name_of(x), "Image": x.get("Image", ""), "Command": x.get("Command", ""),
             "Service": label(x, E.L_SERVICE), "Created": x.get("Created"), "State": x.get("State", ""),
             "Status": x.get("Status", ""), "Ports": _ports(x)} for x in found]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    from dockyard.cli.output import print_table

    print_table(["NAME", "IMAGE", "COMMAND", "SERVICE", "CREATED", "STATUS", "PORTS"],
                [[r["Name"], r["Image"], _command(x), r["Service"], _ago(r["Created"]), r["Status"], r["Ports"]]
                 for r, x in zip(rows, found, strict=True)])


@compose.command()
@click.argument("services", nargs=-1)
@click.option("-f", "--follow", is_flag=True, help="follow log output")
@click.option("-n", "--tail", default="all", help="lines from the end of each container's log")
@click.option("-t", "--timestamps", is_flag=True, help="show timestamps")
@click.option("--no-color", is_flag=True, help="monochrome output")
@click.option("--no-log-prefix", is_flag=True, help="no 'service-1 |' prefix")
@click.option("--index", type=int, help="only this replica")
@click.pass_context
def logs(ctx: click.Context, services: tuple[str, ...], follow: bool, tail: str, timestamps: bool,
         no_color: bool, no_log_prefix: bool, index: int | None) -> None:
    """Show output from the project's containers."""
    import threading

    from dockyard_compose import engine as E
    from dockyard_compose.compose import label
    from dockyard_compose.ui import LogPrinter

    c = _run(lambda: _compose(ctx, required=False))
    found = _run(lambda: c.containers(list(services) or None, all=True, oneoff=None))
    if index is not None:
        found = [x for x in found if label(x, E.L_NUMBER) == str(index)]
    names = [c._short_name(x) for x in found]
    printer = LogPrinter(names, color=False if no_color else None, prefix=not no_log_prefix)

    def one(x: dict[str, Any], n: str) -> None:
        tty = bool((c.engine.inspect(x["Id"]).get("Config") or {}).get("Tty"))
        for stream, data in c.engine.logs(x["Id"], tty, follow=follow, tail=tail, timestamps=timestamps):
            printer.feed(n, stream, data)
        printer.flush(n)

    if not follow:
        for x, n in zip(found, names, strict=True):
            _run(lambda x=x, n=n: one(x, n))
        return
    threads = [threading.Thread(target=one, args=(x, n), daemon=True) for x, n in zip(found, names, strict=True)]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.5)
    except KeyboardInterrupt:
        pass


@compose.command()
@click.argument("services", nargs=-1)
@click.option("-q", "--quiet", is_flag=True, help="only image IDs")
@click.pass_context
def images(ctx: click.Context, services: tuple[str, ...], quiet: bool) -> None:
    """List images used by the project's containers."""
    from dockyard.cli.output import print_table
    from dockyard.client import human_size
    from dockyard_compose.compose import name_of

    c = _run(lambda: _compose(ctx, required=False))
    rows = []
    for x in _run(lambda: c.containers(list(services) or None, all=True, oneoff=None)):
        img = c.engine.image(x.get("ImageID") or x.get("Image")) or {}
        tags = img.get("RepoTags") or [x.get("Image", "")]
        repo, _, tag = tags[0].rpartition(":") if ":" in tags[0].split("/")[-1] else (tags[0], "", "")
        iid = (img.get("Id") or "").removeprefix("sha256:")[:12]
        rows.append([name_of(x), repo, tag, iid, human_size(img.get('Size') or 0, 3)])
    if quiet:
        for r in dict.fromkeys(r[3] for r in rows):
            click.echo(r)
        return
    print_table(["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"], rows)


@compose.command()
@click.argument("service")
@click.argument("private_port")
@click.option("--protocol", default="tcp", type=click.Choice(["tcp", "udp", "sctp"]))
@click.option("--index", default=1, show_default=True)
@click.pass_context
def port(ctx: click.Context, service: str, private_port: str, protocol: str, index: int) -> None:
    """Print the public address of a service's port."""
    c = _run(lambda: _compose(ctx, required=False))
    x = _one(c, service, index)
    info = _run(lambda: c.engine.inspect(x["Id"]))
    binds = ((info.get("NetworkSettings") or {}).get("Ports") or {}).get(f"{private_port}/{protocol}") or []
    if not binds:
        raise click.ClickException(f"no port {private_port}/{protocol} published for {service}")
    b = binds[0]
    click.echo(f"{b.get('HostIp') or '0.0.0.0'}:{b.get('HostPort')}")


@compose.command()
@click.argument("services", nargs=-1)
@click.pass_context
def top(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Show the processes running in the project's containers."""
    from dockyard.cli.output import print_table
    from dockyard_compose.compose import name_of

    c = _run(lambda: _compose(ctx, required=False))
    for x in _run(lambda: c.containers(list(services) or None, all=False)):
        res = _run(lambda x=x: c.engine.get(f"/containers/{x['Id']}/top"))
        titles = res.get("Titles") or []
        procs = res.get("Processes") or []
        if len(titles) == 1 and " " in titles[0]:  # one pre-formatted string per row (podman)
            titles = titles[0].split()
            procs = [p[0].split(None, len(titles) - 1) if len(p) == 1 else p for p in procs]
        click.echo(name_of(x))
        print_table(titles, procs)
        click.echo()


@compose.command()
@click.option("-a", "--all", "all_", is_flag=True, help="also projects with no running container")
@click.option("-q", "--quiet", is_flag=True, help="only names")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.pass_context
def ls(ctx: click.Context, all_: bool, quiet: bool, fmt: str) -> None:
    """List compose projects on the engine (from container labels)."""
    from dockyard.cli.output import print_table
    from dockyard_compose import engine as E
    from dockyard_compose.engine import Engine

    engine = _run(lambda: Engine(_root_host(ctx)))
    found = _run(lambda: engine.containers(None, oneoff=None, all=True))
    projects: dict[str, dict[str, Any]] = {}
    for x in found:
        labels = x.get("Labels") or {}
        p = projects.setdefault(labels.get(E.L_PROJECT, ""), {"states": {}, "files": set()})
        p["states"][x.get("State", "?")] = p["states"].get(x.get("State", "?"), 0) + 1
        if labels.get(E.L_FILES):
            p["files"].add(labels[E.L_FILES])
    rows = []
    for name, p in sorted(projects.items()):
        if not all_ and "running" not in p["states"]:
            continue
        status = ", ".join(f"{s}({n})" for s, n in sorted(p["states"].items()))
        rows.append({"Name": name, "Status": status, "ConfigFiles": ",".join(sorted(p["files"]))})
    if quiet:
        for r in rows:
            click.echo(r["Name"])
    elif fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    else:
        print_table(["NAME", "STATUS", "CONFIG FILES"], [[r["Name"], r["Status"], r["ConfigFiles"]] for r in rows])


# -- lifecycle ------------------------------------------------------------------------------------------


def _one(c: Any, service: str, index: int) -> dict[str, Any]:
    from dockyard_compose import engine as E
    from dockyard_compose.compose import label

    found = [x for x in _run(lambda: c.containers([service], all=True)) if label(x, E.L_NUMBER) == str(index)]
    if not found:
        raise click.ClickException(f"service {service!r} has no container with index {index}")
    return found[0]


def _lifecycle(ctx: click.Context, services: tuple[str, ...], action: str, timeout: int | None = None,
               signal: str | None = None) -> None:
    from dockyard import errors as e
    from dockyard_compose.compose import name_of

    c = _run(lambda: _compose(ctx, required=False))
    if c.ctx is not None:
        _run(lambda: c._check_services(list(services)))
    found = _run(lambda: c.containers(list(services) or None, all=True))
    if action == "stop":
        _run(lambda: c.stop_ordered(found, timeout))
        return
    if action == "start":
        _run(lambda: c.start_ordered(found))
        return
    for x in found:
        cname = name_of(x)
        try:
            if action == "restart":
                t = timeout if timeout is not None else 10
                c.engine.post(f"/containers/{x['Id']}/restart", timeout=t + 30, t=t)
                c.out.event("Container", cname, "Restarted")
            elif action == "kill":
                if x.get("State") == "running":
                    c.engine.post(f"/containers/{x['Id']}/kill", signal=signal or "SIGKILL")
                    c.out.event("Container", cname, "Killed")
            elif action in ("pause", "unpause"):
                c.engine.post(f"/containers/{x['Id']}/{action}")
                c.out.event("Container", cname, action.capitalize() + "d")
        except e.DockyardError as exc:
            raise click.ClickException(f"{action} {cname}: {exc}") from exc


@compose.command()
@click.argument("services", nargs=-1)
@click.pass_context
def start(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Start existing containers."""
    _lifecycle(ctx, services, "start")


@compose.command()
@click.argument("services", nargs=-1)
@click.option("-t", "--timeout", type=int, help="seconds before SIGKILL")
@click.pass_context
def stop(ctx: click.Context, services: tuple[str, ...], timeout: int | None) -> None:
    """Stop running containers (dependents first)."""
    _lifecycle(ctx, services, "stop", timeout)


@compose.command()
@click.argument("services", nargs=-1)
@click.option("-t", "--timeout", type=int, help="seconds before SIGKILL")
@click.pass_context
def restart(ctx: click.Context, services: tuple[str, ...], timeout: int | None) -> None:
    """Restart containers."""
    _lifecycle(ctx, services, "restart", timeout)


@compose.command()
@click.argument("services", nargs=-1)
@click.option("-s", "--signal", default="SIGKILL", show_default=True)
@click.pass_context
def kill(ctx: click.Context, services: tuple[str, ...], signal: str) -> None:
    """Send a signal to running containers."""
    _lifecycle(ctx, services, "kill", signal=signal)


@compose.command()
@click.argument("services", nargs=-1)
@click.pass_context
def pause(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Pause running containers."""
    _lifecycle(ctx, services, "pause")


@compose.command()
@click.argument("services", nargs=-1)
@click.pass_context
def unpause(ctx: click.Context, services: tuple[str, ...]) -> None:
    """Unpause paused containers."""
    _lifecycle(ctx, services, "unpause")


@compose.command()
@click.argument("services", nargs=-1)
@click.option("-f", "--force", is_flag=True, help="do not ask (always true: there is no prompt)")
@click.option("-s", "--stop", "stop_first", is_flag=True, help="stop running containers first")
@click.option("-v", "--volumes", is_flag=True, help="remove anonymous volumes")
@click.pass_context
def rm(ctx: click.Context, services: tuple[str, ...], force: bool, stop_first: bool, volumes: bool) -> None:
    """Remove stopped service containers."""
    from dockyard_compose.compose import name_of

    c = _run(lambda: _compose(ctx, required=False))
    found = _run(lambda: c.containers(list(services) or None, all=True))
    if stop_first:
        _run(lambda: c.stop_ordered(found))
        found = _run(lambda: c.containers(list(services) or None, all=True))
    running = [name_of(x) for x in found if x.get("State") == "running"]
    if running and not stop_first:
        click.echo(f"skipping running containers: {', '.join(running)} (use -s)", err=True)
    for x in found:
        if x.get("State") != "running":
            _run(lambda x=x: c.remove(x, volumes=volumes))
    if not found:
        click.echo("No stopped containers", err=True)


# -- exec / run -----------------------------------------------------------------------------------------


def _env_list(values: tuple[str, ...]) -> dict[str, str]:
    import os

    out = {}
    for v in values:
        k, sep, val = v.partition("=")
        if sep:
            out[k] = val
        elif k in os.environ:
            out[k] = os.environ[k]
    return out


@compose.command(name="exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("service")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.option("-d", "--detach", is_flag=True)
@click.option("-T", "--no-tty", "no_tty", is_flag=True, help="no pseudo-TTY (default: TTY when stdin is one)")
@click.option("-i/-I", "--interactive/--no-interactive", default=True, help="keep stdin open")
@click.option("-u", "--user")
@click.option("-w", "--workdir")
@click.option("-e", "--env", multiple=True, metavar="KEY=VAL")
@click.option("--privileged", is_flag=True)
@click.option("--index", default=1, show_default=True)
@click.pass_context
def exec_(ctx: click.Context, service: str, command: tuple[str, ...], detach: bool, no_tty: bool,
         interactive: bool, user: str | None, workdir: str | None, env: tuple[str, ...], privileged: bool,
         index: int) -> None:
    """Run a command in a running service container."""
    from dockyard_compose import streams

    c = _run(lambda: _compose(ctx, required=False))
    x = _one(c, service, index)
    if x.get("State") != "running":
        raise click.ClickException(f"service {service!r} is not running")
    tty = not no_tty and sys.stdin.isatty()
    code = _run(lambda: streams.exec_in(c.engine, x["Id"], list(command), tty=tty,
                                         interactive=interactive and not detach and not sys.stdin.closed,
                                         detach=detach, user=user, workdir=workdir,
                                         env=[f"{k}={v}" for k, v in _env_list(env).items()],
                                         privileged=privileged))
    ctx.exit(code)


@compose.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("service")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.option("-d", "--detach", is_flag=True)
@click.option("--rm", is_flag=True, help="remove the container when it exits")
@click.option("--name")
@click.option("--entrypoint")
@click.option("-e", "--env", multiple=True, metavar="KEY=VAL")
@click.option("-l", "--label", "labels", multiple=True, metavar="KEY=VAL")
@click.option("-u", "--user")
@click.option("-w", "--workdir")
@click.option("-T", "--no-tty", "no_tty", is_flag=True)
@click.option("-i/-I", "--interactive/--no-interactive", default=True)
@click.option("--no-deps", is_flag=True)
@click.option("--service-ports", is_flag=True, help="publish the service's ports")
@click.option("-p", "--publish", multiple=True)
@click.pass_context
def run(ctx: click.Context, service: str, command: tuple[str, ...], detach: bool, rm: bool, name: str | None,
        entrypoint: str | None, env: tuple[str, ...], labels: tuple[str, ...], user: str | None,
        workdir: str | None, no_tty: bool, interactive: bool, no_deps: bool, service_ports: bool,
        publish: tuple[str, ...]) -> None:
    """Run a one-off command in a new container of a service."""
    import shlex

    c = _run(lambda: _compose(ctx, [service]))
    tty = not no_tty and sys.stdin.isatty() and not detach
    code = _run(lambda: c.run_oneoff(
        service, list(command) or None, entrypoint=shlex.split(entrypoint) if entrypoint is not None else None,
        env=_env_list(env), user=user, workdir=workdir, name=name, rm=rm, detach=detach, tty=tty,
        interactive=interactive and not detach,
        no_deps=no_deps, service_ports=service_ports, publish=list(publish),
        labels=dict(x.partition("=")[::2] for x in labels)))
    ctx.exit(code)


# -- images: build / pull / push ---------------------------------------------------------------------


@compose.command()
@click.argument("services", nargs=-1)
@click.option("--no-cache", is_flag=True)
@click.option("--pull", is_flag=True, help="always pull newer base images")
@click.option("-q", "--quiet", is_flag=True)
@click.pass_context
def build(ctx: click.Context, services: tuple[str, ...], no_cache: bool, pull: bool, quiet: bool) -> None:
    """Build the images of services that have a build section."""
    c = _run(lambda: _compose(ctx, list(services)))
    _run(lambda: c._check_services(list(services)))
    _run(lambda: c.build(list(services) or list(c.model.services), no_cache=no_cache, pull=pull, quiet=quiet))


@compose.command()
@click.argument("services", nargs=-1)
@click.option("--ignore-pull-failures", is_flag=True)
@click.option("--ignore-buildable", is_flag=True, help="skip services that have a build section")
@click.pass_context
def pull(ctx: click.Context, services: tuple[str, ...], ignore_pull_failures: bool, ignore_buildable: bool) -> None:
    """Pull the images of services."""
    from dockyard_compose import spec

    c = _run(lambda: _compose(ctx, list(services)))
    _run(lambda: c._check_services(list(services)))
    failed = False
    for s in services or c.model.services:
        svc = c.model.services[s]
        if svc.build and (ignore_buildable or not svc.image):
            c.out.event("Service", s, "Skipped", "(has a build section)")
            continue
        ok = _run(lambda s=s, svc=svc: c.pull_one(s, spec.image_ref(c.name, s, svc), ignore_pull_failures))
        failed = failed or not ok
    if failed and not ignore_pull_failures:
        ctx.exit(1)


@compose.command()
@click.argument("services", nargs=-1)
@click.option("--ignore-push-failures", is_flag=True)
@click.pass_context
def push(ctx: click.Context, services: tuple[str, ...], ignore_push_failures: bool) -> None:
    """Push the images of services that have a build section and an image name."""
    from dockyard_compose import spec
    from dockyard_compose.compose import split_ref

    c = _run(lambda: _compose(ctx, list(services)))
    _run(lambda: c._check_services(list(services)))
    for s in services or c.model.services:
        svc = c.model.services[s]
        if not svc.build or not svc.image:
            continue
        ref = spec.image_ref(c.name, s, svc)
        name, tag = split_ref(ref)
        c.out.event("Image", ref, "Pushing")
        try:
            for msg in c.engine.stream_json("POST", f"/images/{name}/push", {"tag": tag},
                                            headers={"X-Registry-Auth": "e30="}):
                if msg.get("error"):
                    raise click.ClickException(f"push {ref}: {msg['error']}")
        except click.ClickException:
            if not ignore_push_failures:
                raise
            c.out.event("Image", ref, "Error")
            continue
        c.out.event("Image", ref, "Pushed")
