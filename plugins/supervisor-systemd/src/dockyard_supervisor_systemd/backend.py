"""systemd: ``dockyard.socket`` + ``dockyard.service`` (``Type=notify``), ``container-*.service``.

The daemon: the ``.socket`` unit binds every address (``ListenStream=``) and the service runs
``dockyardd -H fd://`` (socket activation: the first client's connection waits in the socket's
backlog while dockyardd starts; as with docker.socket, a ``systemctl stop`` of the service
leaves the socket, and the next client starts dockyardd again); ``Type=notify``: active when dockyardd says ``READY=1``;
``KillMode=process``: a stop signals dockyardd alone, never conmon or a container, and
``TimeoutStopSec`` bounds it; ``Restart=always`` brings a dead dockyardd back while its
containers keep running. ``Delegate=yes`` leaves the unit's cgroup to dockyardd, as
docker.service does.

A container: ``Type=notify`` on ``dockyard supervise`` (ready once the container started);
``Wants=``/``After=`` the daemon, never ``Requires=`` or ``BindsTo=``: stopping or restarting
dockyardd must not stop a container's unit.
"""

from __future__ import annotations

import re
from pathlib import Path

from dockyard.specs import hookimpl
from dockyard.specs.supervisor import ContainerUnit, DaemonUnit, Supervisor, SupervisorBackend, UnitFile


def quote(arg: str) -> str:
    """One word of ``ExecStart=`` (systemd.service, "Command lines"): ``%`` specifiers and ``$``
    variables escaped, quoted with C escapes when it holds blanks or quotes."""
    arg = arg.replace("%", "%%").replace("$", "$$")
    if arg and not re.search(r'[\s"\'\\;]', arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def environment(pairs: tuple[tuple[str, str], ...]) -> list[str]:
    return [f"Environment={quote(f'{k}={v}')}" for k, v in pairs]


class Systemd(Supervisor):
    name = "systemd"
    directory = "/etc/systemd/system"
    #: unit name characters systemd accepts, minus ``@`` (templates) and ``\\`` (escapes)
    name_pattern = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,200}")

    def detect(self, root: Path = Path("/")) -> bool:
        return (root / "run/systemd/system").is_dir()  # sd_booted(3)

    def daemon_files(self, unit: DaemonUnit) -> list[UnitFile]:
        sock = f"{unit.name}.socket"
        after = ["network-online.target", "nftables.service", "firewalld.service"]
        lines = ["[Unit]", f"Description={unit.description}",
                 f"After={' '.join([*after, sock] if unit.socket_activation else after)}",
                 "Wants=network-online.target"]
        if unit.socket_activation:
            lines.append(f"Requires={sock}")
        lines += ["StartLimitBurst=3", "StartLimitIntervalSec=60", "",
                  "[Service]", "Type=notify", "NotifyAccess=main",
                  f"ExecStart={' '.join(quote(a) for a in unit.command(activated=unit.socket_activation))}",
                  "ExecReload=/bin/kill -s HUP $MAINPID"]
        lines += environment(unit.environment)
        lines += ["# stopping dockyardd never stops its containers: it alone is signalled (live-restore)",
                  "KillMode=process", f"TimeoutStopSec={unit.stop_timeout}", "TimeoutStartSec=300",
                  "Restart=always", "RestartSec=2", "Delegate=yes", "TasksMax=infinity",
                  "LimitNOFILE=1048576", "LimitNPROC=infinity", "LimitCORE=infinity", "OOMScoreAdjust=-500"]
        if unit.log_file:
            lines += [f"StandardOutput=append:{unit.log_file}", "StandardError=inherit"]
        lines += ["", "[Install]", "WantedBy=multi-user.target"]
        if unit.socket_activation:
            lines.append(f"Also={sock}")
        files = [UnitFile(f"{unit.name}.service", "\n".join(lines) + "\n")]
        if unit.socket_activation:
            streams = [f"ListenStream={s}" for s in unit.listen_streams()]
            # no PartOf=: as docker.socket, the socket outlives a stop of the service, so the next
            # client starts dockyardd again (stop both units to stop it for good)
            text = "\n".join(["[Unit]", f"Description={unit.description} (API socket)",
                              "", "[Socket]", *streams, "SocketMode=0660", "SocketUser=root", "SocketGroup=root",
                              "DirectoryMode=0755", "", "[Install]", "WantedBy=sockets.target", ""])
            files.append(UnitFile(sock, text))
        return files

    def container_files(self, unit: ContainerUnit) -> list[UnitFile]:
        daemon = f"{unit.daemon}.service"
        lines = ["[Unit]", f"Description={unit.description or 'dockyard container ' + unit.container}",
                 "Wants=network-online.target",
                 f"After=network-online.target {daemon} {unit.daemon}.socket",
                 f"Wants={daemon}", "", "[Service]",
                 "Environment=DOCKYARD_SYSTEMD_UNIT=%n", "Type=notify", "NotifyAccess=main",
                 f"ExecStart={' '.join(quote(a) for a in unit.command)}",
                 f"Restart={unit.restart}", "RestartSec=1", f"TimeoutStopSec={unit.kill_timeout}",
                 "KillMode=mixed", "", "[Install]", "WantedBy=multi-user.target", ""]
        return [UnitFile(f"{unit.name}.service", "\n".join(lines))]

    def activate(self, name: str, files: list[UnitFile] | tuple[UnitFile, ...]) -> list[list[str]]:
        first = next((f.path for f in files if f.path.endswith(".socket")), f"{name}.service")
        return [["systemctl", "daemon-reload"], ["systemctl", "enable", "--now", first]]


@hookimpl
def dockyard_supervisors(kernel: object) -> list[SupervisorBackend]:
    return [SupervisorBackend("systemd", factory=Systemd, description="systemd units (socket activation, sd_notify)",
                              capabilities=frozenset({"socket-activation", "notify", "restart"}), detect_order=10)]
