"""``dockyard machine``: Docker Machine's commands, as a client of ``/dockyard/v1/machines``
(entry point ``dockyard.cli``: ``machine``). Heavy imports (rich, the client) happen inside the
command bodies.

The machines live in the daemon named by ``-H`` or ``DOCKYARD_HOST`` (default: the local
socket). ``DOCKER_HOST`` is deliberately not used to find that daemon: it is what ``env`` points
the docker client at, so after ``eval $(dockyard machine env h1)`` it names h1's engine; ``ls``
uses it only to mark the active machine.

``env`` and ``config`` fetch the client certificate bundle from the daemon and keep it in
``<storage-path>/machines/<name>`` (``--storage-path``/``MACHINE_STORAGE_PATH``, default
``~/.dockyard/machine``; directories 0700, keys 0600): that is ``DOCKER_CERT_PATH``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

API = "/dockyard/v1/machines"
LS_DEFAULT_FORMAT = ("table {{ .Name }}\t{{ .Active }}\t{{ .DriverName}}\t{{ .State }}\t{{ .URL }}\t"
                     "{{ .Swarm }}\t{{ .DockerVersion }}\t{{ .Error}}")
LS_HEADERS = {"Name": "NAME", "Active": "ACTIVE", "ActiveHost": "ACTIVE_HOST", "ActiveSwarm": "ACTIVE_SWARM",
              "DriverName": "DRIVER", "State": "STATE", "URL": "URL", "SwarmOptions": "SWARM_OPTIONS",
              "Swarm": "SWARM", "EngineOptions": "ENGINE_OPTIONS", "Error": "ERRORS", "DockerVersion": "DOCKER",
              "ResponseTime": "RESPONSE"}
DEFAULT_STORAGE = "~/.dockyard/machine"


class _Opts:
    def __init__(self, storage_path: str) -> None:
        self.storage_path = Path(os.path.expanduser(storage_path))


def _client(ctx: click.Context, timeout: float | None = 60.0) -> Any:
    """The client of the daemon that keeps the machines (see the module docstring)."""
    from dockyard.cli.output import run_api
    from dockyard.client import Client, resolve_address

    obj = ctx.find_root().obj
    explicit = obj.get("host") if isinstance(obj, dict) else None
    env = dict(os.environ)
    if not explicit and not env.get("DOCKYARD_HOST"):
        env = {k: v for k, v in env.items() if not k.startswith("DOCKER_")}
    return run_api(lambda: Client(resolve_address(explicit, env), timeout=timeout))


def _call(fn: Callable[[], Any]) -> Any:
    from dockyard.cli.output import run_api

    return run_api(fn)


def _path(name: str, action: str = "") -> str:
    return f"{API}/{quote(name, safe='')}" + (f"/{action}" if action else "")


def _fail(message: str) -> None:
    raise click.ClickException(message)


def _bundle_dir(ctx: click.Context, name: str) -> Path:
    return ctx.find_object(_Opts).storage_path / "machines" / name


def _write_private(path: Path, data: str, mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _fetch_bundle(ctx: click.Context, name: str, what: str) -> tuple[dict[str, Any], Path]:
    """The machine's URL and client certificates from the daemon, written to the local bundle
    directory (``DOCKER_CERT_PATH``)."""
    from dockyard.errors import DockyardError

    client = _client(ctx)
    try:
        doc = client.get(_path(name, "env"))
    except DockyardError as exc:
        _fail(f"{what}: {exc}")
    directory = _bundle_dir(ctx, name)
    for d in reversed([directory, *directory.parents]):
        if not d.exists():
            d.mkdir(mode=0o700)
    os.chmod(directory, 0o700)
    _write_private(directory / "ca.pem", doc["CA"], 0o644)
    _write_private(directory / "key.pem", doc["Key"], 0o600)
    _write_private(directory / "cert.pem", doc["Cert"], 0o644)
    return doc, directory


# ---------------------------------------------------------------------------------- the group
@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-s", "--storage-path", envvar="MACHINE_STORAGE_PATH", default=DEFAULT_STORAGE, show_default=True,
              help="where env/config keep each machine's client certificates [$MACHINE_STORAGE_PATH]")
@click.pass_context
def machine(ctx: click.Context, storage_path: str) -> None:
    """Create and manage machines that run a dockyard engine (Docker Machine's commands).

    The machines live in the daemon named by -H or DOCKYARD_HOST (default: the local socket),
    which provisions them through a provision driver (netns: a network namespace on this
    machine running its own engine with mutual TLS). DOCKER_HOST is not used to find that
    daemon: `env` points it at a machine.
    """
    ctx.obj = _Opts(storage_path)


# ---------------------------------------------------------------------------------- create
class _Progress:
    """Create's progress lines: plain lines off a terminal (Docker Machine's output); on one, a
    rich spinner on the step under way and a tick for each step done (a cross for the one that
    failed). rich is imported only for a terminal."""

    def __init__(self) -> None:
        self.rich = sys.stdout.isatty()
        self.ok = False
        self._status: Any = None
        self._console: Any = None
        self._current: str | None = None

    def __enter__(self) -> _Progress:
        if self.rich:
            from rich.console import Console

            self._console = Console(highlight=False)
            self._status = self._console.status("")
            self._status.start()
        return self

    def line(self, text: str) -> None:
        if self._console is None:
            click.echo(text)
            return
        from rich.markup import escape

        if self._current is not None:
            self._console.print(f"[green]✔[/] {escape(self._current)}")
        self._current = text
        self._status.update(escape(text))

    def __exit__(self, *exc: Any) -> None:
        if self._status is None:
            return
        from rich.markup import escape

        self._status.stop()
        if self._current is not None:
            mark = "[green]✔[/]" if self.ok and exc[0] is None else "[red]✘[/]"
            self._console.print(f"{mark} {escape(self._current)}")


def driver_flags(driver: str, args: list[str] | tuple[str, ...]) -> tuple[dict[str, str], list[str]]:
    """Docker Machine's driver flags among ``create``'s other arguments: ``--DRIVER-KEY VALUE``
    or ``--DRIVER-KEY=VALUE`` is the driver option ``DRIVER-KEY`` (``--ssh-address``,
    ``--qemu-memory``). Returns them and the positional arguments; another flag is a usage
    error naming it."""
    prefix = f"--{driver}-"
    options: dict[str, str] = {}
    positional: list[str] = []
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if not arg.startswith("-"):
            positional.append(arg)
            continue
        if not arg.startswith(prefix) or len(arg) == len(prefix):
            raise click.UsageError(f"unknown flag {arg!r} (driver flags of -d {driver} start with {prefix})")
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if not rest or rest[0].startswith("--"):
                raise click.UsageError(f"flag {arg!r} needs a value")
            value = rest.pop(0)
        options[key] = value
    return options, positional


@machine.command(context_settings={"help_option_names": ["-h", "--help"], "ignore_unknown_options": True,
                                   "allow_extra_args": True},
                 epilog="Driver flags: --DRIVER-KEY VALUE (or --DRIVER-KEY=VALUE) is the driver option "
                        "DRIVER-KEY, as Docker Machine's driver flags: -d ssh --ssh-address 10.0.0.5 "
                        "--ssh-user root --ssh-key ~/.ssh/id_ed25519 --ssh-port 22; -d qemu --qemu-memory 2048 "
                        "--qemu-cpus 2 --qemu-disk-size 20G. The daemon checks them against the driver.")
@click.option("-d", "--driver", default="netns", show_default=True,
              help="provision driver to create the machine with (netns: a local test host)")
@click.option("--driver-opt", "driver_opts", multiple=True, metavar="KEY=VALUE", help="an option of the driver")
@click.option("--engine-label", "labels", multiple=True, metavar="KEY=VALUE", help="a label of the created engine")
@click.option("--engine-opt", "opts", multiple=True, metavar="FLAG[=VALUE]",
              help="any dockyardd flag for the created engine, as flag=value")
@click.option("--engine-env", "env", multiple=True, metavar="KEY=VALUE", help="environment of the created engine")
@click.option("--engine-storage-driver", "storage_driver", default="", help="the engine's storage driver")
@click.option("--engine-insecure-registry", "insecure", multiple=True, metavar="HOST",
              help="a registry the engine may reach without TLS verification")
@click.option("--engine-registry-mirror", "mirrors", multiple=True, metavar="URL",
              help="a Docker Hub mirror for the created engine (its --registry-mirror; repeatable)")
@click.option("--swarm", "is_swarm", is_flag=True, help="make the engine a node of the swarm of --swarm-discovery")
@click.option("--swarm-master", is_flag=True, help="the machine is the swarm's master (env --swarm: tcp://ADDR:3376)")
@click.option("--swarm-discovery", default="", metavar="URL", help="the swarm's cluster store: etcd://HOST:PORT/PREFIX")
@click.argument("args", nargs=-1, type=click.UNPROCESSED, metavar="NAME")
@click.pass_context
def create(ctx: click.Context, driver: str, driver_opts: tuple[str, ...], labels: tuple[str, ...],
           opts: tuple[str, ...], env: tuple[str, ...], storage_driver: str, insecure: tuple[str, ...],
           mirrors: tuple[str, ...], is_swarm: bool, swarm_master: bool, swarm_discovery: str,
           args: tuple[str, ...]) -> None:
    """Create a machine."""
    from dockyard.errors import DockyardError

    options, names = driver_flags(driver, [*args, *ctx.args])
    if len(names) != 1:
        raise click.UsageError("create takes exactly one machine NAME" + (f" (got {' '.join(names)})" if names else ""))
    name = names[0]
    for item in driver_opts:
        key, sep, value = item.partition("=")
        if not sep:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--driver-opt")
        options[key] = value
    body = {"Name": name, "DriverName": driver, "DriverOptions": options,
            "EngineOptions": {"Labels": list(labels), "ArbitraryFlags": list(opts), "Env": list(env),
                              "StorageDriver": storage_driver, "InsecureRegistry": list(insecure),
                              "RegistryMirror": list(mirrors)},
            "SwarmOptions": {"IsSwarm": is_swarm, "Master": swarm_master, "Discovery": swarm_discovery}}
    client = _client(ctx, timeout=None)
    error, done = None, False
    try:
        with _Progress() as progress:
            for msg in client.stream_json("POST", f"{API}/create", body=body):
                if "error" in msg or "errorDetail" in msg:
                    error = (msg.get("errorDetail") or {}).get("message") or msg.get("error")
                elif "aux" in msg:
                    done = progress.ok = True
                elif "status" in msg:
                    progress.line(str(msg["status"]))
    except DockyardError as exc:
        error = str(exc)
    except OSError as exc:  # the daemon went away mid-stream
        error = f"the connection to the daemon broke: {exc}"
    if not error and not done:
        error = ("the daemon ended the answer before the machine was created (did it stop?); "
                 f"see: {' '.join(_program()[:1])} machine ls")
    if error:
        _fail(f"Error creating machine: {error}")
    prog = " ".join(_program()[:1] + ["machine"])
    click.echo("To see how to connect your Docker Client to the Docker Engine running on this machine, "
               f"run: {prog} env {name}")


def _program() -> list[str]:
    from dockyard_machine.shell import program_argv

    return program_argv()


# ---------------------------------------------------------------------------------- ls
def _list(ctx: click.Context, filters: dict[str, list[str]] | None = None, timeout: float = 10) -> list[dict[str, Any]]:
    params: dict[str, Any] = {"timeout": timeout}
    if filters:
        params["filters"] = json.dumps(filters)
    client = _client(ctx, timeout=timeout + 60)
    items = _call(lambda: client.get(API, **params))
    from dockyard_machine.listing import first_line

    docker_host = os.environ.get("DOCKER_HOST", "")
    for item in items:
        item["Error"] = first_line(item.get("Error") or "")
        active = item["State"] == "Running" and bool(item["URL"]) and item["URL"] == docker_host
        swarm = item.get("SwarmOptions") or {}
        master = item.get("SwarmMaster") or ""
        # Docker Machine's SWARM column: "NAME (master)" for a master, its master's name for a node
        column = f"{master} (master)" if swarm.get("Master") and master == item["Name"] else master
        active_swarm = bool(swarm.get("Master") and swarm.get("Host") and swarm.get("Host") == docker_host)
        item.update(Active="* (swarm)" if active_swarm else "*" if active else "-", ActiveHost=active,
                    ActiveSwarm=active_swarm, Swarm=column, SwarmOptions=swarm or None)
    return items


@machine.command("ls")
@click.option("-q", "--quiet", is_flag=True, help="Enable quiet mode")
@click.option("--filter", "filters", multiple=True, metavar="KEY=VALUE",
              help="Filter output based on conditions provided: driver, state, name (a regular expression), "
                   "label (an engine label KEY=VALUE), swarm")
@click.option("-t", "--timeout", type=int, default=10, show_default=True, help="Timeout in seconds per machine")
@click.option("-f", "--format", "fmt", default="", help="Pretty-print machines using a Go template")
@click.pass_context
def ls(ctx: click.Context, quiet: bool, filters: tuple[str, ...], timeout: int, fmt: str) -> None:
    """List machines.

    Columns NAME ACTIVE DRIVER STATE URL SWARM DOCKER ERRORS; ACTIVE is * for the running
    machine DOCKER_HOST points at. --format fields: Name, Active, ActiveHost, ActiveSwarm,
    DriverName, State, URL, SwarmOptions, Swarm, EngineOptions, Error, DockerVersion,
    ResponseTime ('table' in front adds the header row).
    """
    from dockyard.errors import DockyardError
    from dockyard_machine.formatting import parse_format, render_items
    from dockyard_machine.listing import Filters

    try:
        parsed = Filters.parse_cli(filters)
        template, table = parse_format(fmt, LS_DEFAULT_FORMAT)
    except DockyardError as exc:
        _fail(str(exc))
    items = _list(ctx, parsed.to_json(), timeout)
    if quiet:
        for item in items:
            click.echo(item["Name"])
        return
    try:
        text = render_items(template, items, LS_HEADERS if table else None, "commands.HostListItem")
    except DockyardError as exc:
        _fail(str(exc))
    click.echo(text, nl=False)


@machine.command()
@click.pass_context
def active(ctx: click.Context) -> None:
    """Print which machine is active.

    The active machine is the running one DOCKER_HOST points at.
    """
    for item in _list(ctx):
        if item["ActiveHost"]:
            click.echo(item["Name"])
            return
    _fail("No active host found")


# ---------------------------------------------------------------------------------- one machine
def _inspect(ctx: click.Context, name: str) -> dict[str, Any]:
    client = _client(ctx)
    return _call(lambda: client.get(_path(name, "json")))


@machine.command()
@click.option("-f", "--format", "fmt", default="", help="Format the output using the given Go template")
@click.argument("name")
@click.pass_context
def inspect(ctx: click.Context, fmt: str, name: str) -> None:
    """Inspect information about a machine.

    Docker Machine's document, with dockyard's State and Error (why it is not running).
    """
    from dockyard.errors import DockyardError
    from dockyard_machine.formatting import parse

    doc = _inspect(ctx, name)
    if not fmt:
        click.echo(json.dumps(doc, indent=4))
        return
    try:
        click.echo(parse(fmt).execute(doc))
    except DockyardError as exc:
        _fail(str(exc))


@machine.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def ip(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Get the IP address of a machine."""
    for name in names:
        doc = _inspect(ctx, name)
        click.echo(doc["Driver"].get("IPAddress") or (doc.get("Addresses") or [""])[0])


@machine.command()
@click.argument("name")
@click.pass_context
def url(ctx: click.Context, name: str) -> None:
    """Get the URL of a machine."""
    doc = _inspect(ctx, name)
    if doc["State"] != "Running" or not doc.get("URL"):
        _fail("Host is not running")
    click.echo(doc["URL"])


@machine.command()
@click.argument("name")
@click.pass_context
def status(ctx: click.Context, name: str) -> None:
    """Get the status of a machine."""
    click.echo(_inspect(ctx, name)["State"])


@machine.command()
@click.option("--shell", default="", help="Force environment to be configured for a specified shell: "
                                          "[fish, cmd, powershell, tcsh, emacs], default is auto-detect")
@click.option("-u", "--unset", is_flag=True, help="Unset variables instead of setting them")
@click.option("--swarm", is_flag=True, help="Display the Swarm config instead of the Docker daemon")
@click.option("--no-proxy", is_flag=True, help="Add machine IP to NO_PROXY environment variable")
@click.argument("name", required=False)
@click.pass_context
def env(ctx: click.Context, shell: str, unset: bool, swarm: bool, no_proxy: bool, name: str | None) -> None:
    """Display the commands to set up the environment for the Docker client.

    Prints DOCKER_TLS_VERIFY, DOCKER_HOST, DOCKER_CERT_PATH and DOCKER_MACHINE_NAME for
    `eval $(dockyard machine env NAME)`. DOCKER_CERT_PATH is a local directory holding the
    machine's client certificates, fetched from the daemon.
    """
    from dockyard.errors import DockyardError
    from dockyard_machine import shell as sh

    try:
        chosen = sh.check_shell(shell or sh.detect())
    except DockyardError as exc:
        _fail(str(exc))
    argv = sh.program_argv()
    if unset:
        if name:
            _fail("Error: Expected no machine name when the -u flag is present")
        proxy = sh.no_proxy("", unset=True) if no_proxy else None
        click.echo(sh.render(chosen, sh.EnvValues(no_proxy=proxy), argv, unset=True), nl=False)
        return
    if not name:
        _fail("Error: No machine name specified.")
    doc, directory = _fetch_bundle(ctx, name, "Error checking TLS connection")
    if swarm and not doc.get("SwarmHost"):
        _fail(f'Error checking TLS connection: Error: {name} is not a swarm master.  The --swarm flag is intended '
              "for use with swarm masters")
    proxy = sh.no_proxy((doc.get("Addresses") or [""])[0]) if no_proxy else None
    values = sh.EnvValues(host=doc["SwarmHost"] if swarm else doc["URL"], cert_path=str(directory), machine=name,
                          no_proxy=proxy)
    click.echo(sh.render(chosen, values, argv), nl=False)


@machine.command()
@click.option("--swarm", is_flag=True, help="Display the Swarm config instead of the Docker daemon")
@click.argument("name")
@click.pass_context
def config(ctx: click.Context, swarm: bool, name: str) -> None:
    """Print the connection config for machine.

    The docker CLI's TLS flags, with the client certificates fetched from the daemon.
    """
    doc, directory = _fetch_bundle(ctx, name, "Error running connection boilerplate")
    if swarm and not doc.get("SwarmHost"):
        _fail(f"Error running connection boilerplate: Error: {name} is not a swarm master.  The --swarm flag is "
              "intended for use with swarm masters")
    click.echo(f'--tlsverify\n--tlscacert="{directory / "ca.pem"}"\n--tlscert="{directory / "cert.pem"}"\n'
               f'--tlskey="{directory / "key.pem"}"\n-H={doc["SwarmHost"] if swarm else doc["URL"]}')


# ---------------------------------------------------------------------------------- transitions
def _each(ctx: click.Context, names: tuple[str, ...], action: str, before: str, after: str,
          already: str = "") -> None:
    """``action`` on every machine, Docker Machine's messages around each; errors are collected
    and reported together (exit status 1)."""
    from dockyard.errors import DockyardError, NotModified

    client = _client(ctx, timeout=None)
    errors = []
    for name in names:
        if before:
            click.echo(before.format(name=name))
        try:
            client.post(_path(name, action))
        except NotModified:
            errors.append(f'Machine "{name}" is already {already}.')
            continue
        except DockyardError as exc:
            errors.append(str(exc))
            continue
        if after:
            click.echo(after.format(name=name))
    if errors:
        _fail("\n".join(errors))


@machine.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def start(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Start a machine."""
    _each(ctx, names, "start", 'Starting "{name}"...', 'Machine "{name}" was started.', "running")
    click.echo("Started machines may have new IP addresses. You may need to re-run the "
               "`dockyard machine env` command.")


@machine.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def stop(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Stop a machine.

    Its engine and everything it runs stop; the engine's data stays for start.
    """
    _each(ctx, names, "stop", 'Stopping "{name}"...', 'Machine "{name}" was stopped.', "stopped")


@machine.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def kill(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Kill a machine.

    For netns the same power-off as stop: what the engine leaves is killed with its cgroup.
    """
    _each(ctx, names, "kill", 'Killing "{name}"...', 'Machine "{name}" was killed.', "stopped")


@machine.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def restart(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Restart a machine.

    Stops it when it runs (or its engine died), then starts it.
    """
    _each(ctx, names, "restart", 'Restarting "{name}"...', "")
    click.echo("Restarted machines may have new IP addresses. You may need to re-run the "
               "`dockyard machine env` command.")


def _confirm(question: str) -> bool:
    click.echo(f"{question} (y/n): ", nl=False)
    answer = sys.stdin.readline()
    return answer.strip().lower().startswith("y")


@machine.command()
@click.option("-f", "--force", is_flag=True,
              help="Remove local configuration even if machine cannot be removed, also implies an automatic yes (`-y`)")
@click.option("-y", "yes", is_flag=True,
              help="Assumes automatic yes to proceed with remove, without prompting further user confirmation")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def rm(ctx: click.Context, force: bool, yes: bool, names: tuple[str, ...]) -> None:
    """Remove a machine.

    The host, its engine and its data, and its certificates.
    """
    import shutil

    from dockyard.errors import DockyardError, NotFound

    click.echo(f"About to remove {', '.join(names)}")
    click.echo("WARNING: This action will delete both local reference and remote instance.")
    if not (yes or force) and not _confirm("Are you sure?"):
        return
    client = _client(ctx, timeout=None)
    errors = []
    for name in names:
        try:
            client.delete(_path(name), force=1 if force else None)
        except NotFound as exc:
            if not force:
                errors.append(f'Error removing host "{name}": {exc}')
                continue
        except DockyardError as exc:
            errors.append(f'Error removing host "{name}": {exc}')
            continue
        shutil.rmtree(_bundle_dir(ctx, name), ignore_errors=True)
        click.echo(f"Successfully removed {name}")
    if errors:
        _fail("\n".join(errors))


@machine.command("regenerate-certs")
@click.option("-f", "--force", is_flag=True, help="Force rebuild and do not prompt")
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def regenerate_certs(ctx: click.Context, force: bool, names: tuple[str, ...]) -> None:
    """Regenerate TLS Certificates for a machine.

    A new server key and certificate (same CA, same addresses); a running engine is restarted
    to present it, keeping its images, containers and volumes (running containers stop). The
    client certificates do not change.
    """
    if not force and not _confirm("Regenerate TLS machine certs?  Warning: this is irreversible."):
        return
    click.echo("Regenerating TLS certificates")
    _each(ctx, names, "regenerate-certs", "", "")


@machine.command()
@click.argument("names", nargs=-1, required=True)
@click.pass_context
def upgrade(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Upgrade a machine to the installed dockyard.

    A netns machine runs this machine's installed dockyard, so upgrading it is restarting its
    engine (after `pip install -U ...`): nothing is downloaded. Its images, containers and
    volumes stay (running containers stop).
    """
    from dockyard.errors import DockyardError

    client = _client(ctx, timeout=None)
    errors = []
    for name in names:
        click.echo(f'Restarting the engine of "{name}" on the dockyard installed for it...')
        try:
            res = client.post(_path(name, "upgrade"))
        except DockyardError as exc:
            errors.append(str(exc))
            continue
        was = f" (it ran {res['PreviousVersion']})" if res.get("PreviousVersion") else ""
        click.echo(f'Machine "{name}" runs dockyard {res.get("Version") or "(unknown)"}{was}.')
    if errors:
        _fail("\n".join(errors))


# ---------------------------------------------------------------------------------- ssh, scp
def _netns_target(ctx: click.Context, name: str, what: str) -> dict[str, Any]:
    """The machine's inspect document, checked to be a netns machine this client can enter:
    its daemon runs here (a unix socket) and the machine runs."""
    doc = _inspect(ctx, name)
    if doc["DriverName"] != "netns":
        _fail(f"{what}: machine {name} uses the {doc['DriverName']} driver; only netns machines are supported here")
    client = _client(ctx)
    if client.address.scheme != "unix":
        _fail(f"{what}: a netns machine is entered on the machine that runs its daemon; this client talks to "
              f"{client.host}")
    return doc


def _engine_pid(doc: dict[str, Any]) -> int:
    run = doc["Driver"].get("Run") or ""
    try:
        return int(Path(run, "dockyardd.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        _fail(f'Error: Cannot run SSH command: Host "{doc["Name"]}" is not running')
        raise AssertionError from None


@machine.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("name")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def ssh(ctx: click.Context, name: str, command: tuple[str, ...]) -> None:
    """Log into or run a command on a machine.

    A machine with SSH (ssh, qemu) is logged into with OpenSSH, its key and its pinned host
    key, from the machine that runs the daemon. For a netns machine there is no SSH: the
    command runs in the host's network and UTS
    namespaces (`nsenter --target ENGINE_PID --net --uts`, as root, on the daemon's machine),
    so it sees the host's eth0 and address and its hostname; the filesystem is this machine's.
    Without COMMAND, $SHELL (or /bin/sh) runs there.
    """
    import shutil
    import subprocess

    doc = _inspect(ctx, name)
    if doc["Driver"].get("SSHHostname"):
        if doc["State"] != "Running":
            _fail(f'Error: Cannot run SSH command: Host "{name}" is not running')
        ctx.exit(subprocess.call([*_ssh_argv(doc, "ssh"), *( ["-t"] if not command else [] ),
                                  f"{doc['Driver']['SSHUser']}@{doc['Driver']['SSHHostname']}", *command]))
    doc = _netns_target(ctx, name, "Error: Cannot run SSH command")
    if doc["State"] != "Running":
        _fail(f'Error: Cannot run SSH command: Host "{name}" is not running')
    nsenter = shutil.which("nsenter")
    if nsenter is None:
        _fail("Error: Cannot run SSH command: nsenter (util-linux) is not installed")
    pid = _engine_pid(doc)
    argv = list(command) or [os.environ.get("SHELL") or "/bin/sh"]
    ctx.exit(subprocess.call([nsenter, "--target", str(pid), "--net", "--uts", "--", *argv]))


def _ssh_argv(doc: dict[str, Any], program: str) -> list[str]:
    """OpenSSH's ``ssh``/``scp`` with the machine's key, port and pinned host key (the files
    live on the machine that runs the daemon: run this there)."""
    import shutil

    exe = shutil.which(program)
    if exe is None:
        _fail(f"Error: {program} (openssh-client) is not installed")
    d = doc["Driver"]
    port_flag = "-P" if program == "scp" else "-p"
    argv = [str(exe), port_flag, str(d.get("SSHPort") or 22), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", "LogLevel=ERROR"]
    if d.get("SSHKnownHosts"):
        argv += ["-o", f"UserKnownHostsFile={d['SSHKnownHosts']}"]
    if d.get("SSHKeyPath"):
        argv += ["-o", "IdentitiesOnly=yes", "-i", str(d["SSHKeyPath"])]
    return argv


def _split_remote(arg: str) -> tuple[str | None, str]:
    """``NAME:path`` -> (NAME, path); a plain path (or ``./a:b``, ``/a:b``) -> (None, arg)."""
    if ":" in arg and not arg.startswith(("/", ".")):
        name, _, path = arg.partition(":")
        if name and "/" not in name:
            return name, path
    return None, arg


@machine.command()
@click.option("-r", "--recursive", is_flag=True, help="Copy files recursively (required to copy directories)")
@click.option("-d", "--delta", is_flag=True, help="Reduce amount of data sent over network by sending only the "
                                                    "differences (uses rsync)")
@click.option("-q", "--quiet", is_flag=True, help="Disables the progress meter as well as warning and diagnostic "
                                                   "messages from ssh")
@click.argument("source")
@click.argument("destination")
@click.pass_context
def scp(ctx: click.Context, recursive: bool, delta: bool, quiet: bool, source: str, destination: str) -> None:
    """Copy files between machines.

    SOURCE and DESTINATION are [machine:]path.

    A machine with SSH (ssh, qemu) is copied to and from with OpenSSH's scp, its key and its
    pinned host key. A netns machine shares this machine's filesystem (only its network is its
    own), so a copy to or from it is a local copy, made on the machine that runs its daemon.
    """
    import shutil
    import subprocess

    ends = [_split_remote(arg) for arg in (source, destination)]
    docs = {name: _inspect(ctx, name) for name, _path in ends if name is not None}
    over_ssh = [n for n, d in docs.items() if d["Driver"].get("SSHHostname")]
    if over_ssh:  # scp with the machines' keys and pinned host keys
        if len(docs) > 1:
            _fail("Error copying: copy between two machines through this machine, one end at a time")
        doc = docs[over_ssh[0]]
        if delta:
            _fail("--delta (rsync) is not supported; copy without it")
        argv = _ssh_argv(doc, "scp") + (["-r"] if recursive else []) + (["-q"] if quiet else [])
        remote = f"{doc['Driver']['SSHUser']}@{doc['Driver']['SSHHostname']}:"
        argv += [remote + path if name else path for name, path in ends]
        ctx.exit(subprocess.call(argv))
    if delta:
        _fail("--delta (rsync) is not supported: a netns machine's files are this machine's; copy without it")
    paths = []
    for name, path in ends:
        if name is not None:
            _netns_target(ctx, name, "Error copying")
        paths.append(Path(path or "."))
    src, dst = paths
    try:
        if src.is_dir():
            if not recursive:
                _fail(f"{src}: is a directory (use -r)")
            target = dst / src.name if dst.is_dir() else dst
            shutil.copytree(src, target, symlinks=True, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
    except OSError as exc:
        _fail(f"scp: {exc.filename or src}: {exc.strerror or exc}")


__all__ = ["machine"]
