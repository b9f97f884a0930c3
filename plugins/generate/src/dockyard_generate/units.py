"""From a container (or the daemon's settings) to the typed units a backend renders, and the
files written all at once.

Who restarts what (docs/supervisors.md):

* a container with a restart policy of its own is restarted by dockyardd only: its unit gets
  ``restart="no"`` and ``dockyard supervise`` follows the container through dockyardd's restarts;
  asking for another ``--restart-policy`` for it is refused;
* a ``--new`` unit owns the container's life: it creates the container at start (from the
  settings recorded in the unit, restart policy ``no``, label ``dockyard.unit``) and removes it
  when it ends; the supervisor restarts it by ``--restart-policy``;
* the daemon's unit restarts dockyardd; stopping it signals dockyardd alone, so its containers
  keep running and a restarted dockyardd re-attaches them.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.specs.supervisor import ContainerUnit, DaemonUnit, Supervisor, UnitFile

#: Label on a container a ``--new`` unit created: the unit's name.
UNIT_LABEL = "dockyard.unit"
#: What ``--restart-policy`` defaults to (podman's default).
DEFAULT_RESTART = "on-failure"


def installed_command(name: str) -> str:
    """The absolute path of this installation's ``dockyard``/``dockyardd`` (beside the running
    interpreter: a venv's bin), else the one on ``PATH``, else ``/usr/bin/<name>``."""
    here = Path(sys.executable).parent / name
    if here.exists():
        return str(here)
    import shutil

    return shutil.which(name) or f"/usr/bin/{name}"


def encode_spec(spec: dict[str, Any]) -> str:
    """A create request as one word every supervisor's command line carries unquoted."""
    return base64.urlsafe_b64encode(json.dumps(spec, separators=(",", ":"), sort_keys=True).encode()).decode()


def decode_spec(text: str) -> dict[str, Any]:
    try:
        spec = json.loads(base64.urlsafe_b64decode(text.encode()))
    except ValueError as exc:
        raise InvalidArgument(f"the unit's container settings do not decode: {exc}") from exc
    if not isinstance(spec, dict) or "Image" not in spec:
        raise InvalidArgument("the unit's container settings are not a create request")
    return spec


def create_spec(inspect: dict[str, Any]) -> dict[str, Any]:
    """The create request (``POST /containers/create`` body) that makes the container again
    from its inspect document, with restart policy ``no`` and no auto-removal: the unit owns
    its life. The generated host name (the ID's prefix) is left for the new container's own."""
    config = dict(inspect.get("Config") or {})
    cid = str(inspect.get("Id", ""))
    if config.get("Hostname") and cid.startswith(str(config["Hostname"])):
        config.pop("Hostname")
    host = dict(inspect.get("HostConfig") or {})
    host["RestartPolicy"] = {"Name": "no", "MaximumRetryCount": 0}
    host["AutoRemove"] = False
    spec = {k: v for k, v in config.items() if v not in (None, "", [], {})}
    spec["HostConfig"] = {k: v for k, v in host.items() if v is not None}
    return spec


def restart_policy_of(inspect: dict[str, Any]) -> str:
    policy = ((inspect.get("HostConfig") or {}).get("RestartPolicy") or {}).get("Name") or "no"
    return str(policy)


@dataclass(frozen=True)
class ContainerRequest:
    """What ``dockyard generate`` was asked for one container."""

    new: bool = False
    use_name: bool = False
    restart: str | None = None  # None: the default for the row of the matrix
    stop_timeout: int = 10
    prefix: str = "container"
    separator: str = "-"
    daemon: str = "dockyard"
    host: str = ""  # the daemon address the unit's command uses ("" : the default)


def container_unit(inspect: dict[str, Any], req: ContainerRequest) -> ContainerUnit:
    """The unit of one container, from its inspect document (see the module doc for the rows)."""
    name = str(inspect.get("Name", "")).lstrip("/")
    cid = str(inspect["Id"])
    ident = name if (req.use_name or req.new) else cid
    unit_name = f"{req.prefix}{req.separator}{ident}" if req.prefix else ident
    own = restart_policy_of(inspect)
    if req.new:
        restart = req.restart or DEFAULT_RESTART
    elif own != "no":
        if req.restart not in (None, "no"):
            raise InvalidArgument(
                f"container {name} has the restart policy {own!r}: dockyardd restarts it, so its unit must not "
                f"(--restart-policy no), or make the unit own it with --new (the container then gets none)")
        restart = "no"
    else:
        restart = req.restart or DEFAULT_RESTART
    command = [installed_command("dockyard")]
    if req.host:
        command += ["-H", req.host]
    command += ["supervise", "--unit", unit_name, "--time", str(req.stop_timeout)]
    if req.new:
        command += ["--new", "--spec", encode_spec(create_spec(inspect)), name]
    else:
        command.append(ident)
    what = f"dockyard container {name}" + (" (created at start, removed at stop)" if req.new else "")
    return ContainerUnit(name=unit_name, container=name, command=tuple(command), new=req.new, restart=restart,
                         stop_timeout=req.stop_timeout, daemon=req.daemon, description=what)


def daemon_unit(*, name: str = "dockyard", hosts: Sequence[str] = (), data_root: str = "", exec_root: str = "",
                config_file: str = "", flags: Sequence[str] = (), socket_activation: bool = True,
                stop_timeout: int = 20, log_file: str = "") -> DaemonUnit:
    """dockyardd's unit: this installation's dockyardd with the roots and sockets asked for
    (defaults: dockerd's layout under ``/var/lib/dockyard`` and ``/run/dockyard``)."""
    run = exec_root or "/run/dockyard"
    argv = [installed_command("dockyardd")]
    if data_root:
        argv += ["--data-root", data_root]
    if exec_root:
        argv += ["--exec-root", exec_root]
    if config_file:
        argv += ["--config-file", config_file]
    argv += list(flags)
    return DaemonUnit(name=name, dockyardd=tuple(argv), hosts=tuple(hosts) or (f"unix://{run}/dockyard.sock",),
                      pidfile=os.path.join(run, "dockyardd.pid"), socket_activation=socket_activation,
                      stop_timeout=stop_timeout, log_file=log_file)


def check_restart(supervisor: Supervisor, restart: str) -> None:
    supported = supervisor.restart_policies
    if restart not in supported:
        raise InvalidArgument(f"{supervisor.name} cannot restart a service {restart!r}: one of {', '.join(supported)}")


def write_files(directory: Path, files: Sequence[UnitFile]) -> list[Path]:
    """Write every file below ``directory`` (each atomically: a temporary file renamed), after
    checking all of them, so a bad one writes nothing."""
    targets = [(directory / f.path, f) for f in files]
    for path, _f in targets:
        if path.exists() and not path.is_file():
            raise InvalidArgument(f"{path} exists and is not a file: nothing written")
    out = []
    for path, f in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
        tmp.write_text(f.text)
        os.chmod(tmp, f.mode)
        os.replace(tmp, path)
        out.append(path)
    return out
