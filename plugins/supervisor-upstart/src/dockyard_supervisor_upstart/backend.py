"""upstart: a job ``/etc/init/NAME.conf``.

dockyardd runs in the foreground (``exec``, no ``expect`` stanza: it does not fork); it writes
and locks its own PID file (``--pidfile``), which sysV-style tools read. ``respawn`` (with a
``respawn limit``) restarts it; ``kill timeout`` is the stop timeout. upstart signals the job's
main process; conmon and the containers run in sessions of their own, outside its process
group, so they keep running. A container's job starts ``on started`` the daemon's job and stops
only at shutdown (``stop on runlevel``), never with the daemon: a restart of dockyardd leaves
it running. upstart has no socket activation (its ``socket`` event passes no descriptor).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from dockyard.specs import hookimpl
from dockyard.specs.supervisor import ContainerUnit, DaemonUnit, Supervisor, SupervisorBackend, UnitFile


def job(description: str, start_on: str, argv: list[str] | tuple[str, ...], env: tuple[tuple[str, str], ...],
        restart: str, kill_timeout: int, log: str, extra: list[str] | None = None) -> str:
    lines = [f'description "{description.replace(chr(34), chr(39))}"', 'author "dockyard generate upstart"', "",
             f"start on {start_on}", "stop on runlevel [!2345]", ""]
    if restart != "no":
        lines += ["respawn", "respawn limit 5 60"]
        if restart == "on-failure":
            lines.append("normal exit 0")
    lines += ["kill signal SIGTERM", f"kill timeout {kill_timeout}", *(extra or [])]
    lines += [f"env {k}={shlex.quote(v)}" for k, v in env]
    cmd = " ".join(shlex.quote(a) for a in argv)
    lines += ["", "script", f"\texec {cmd} >>{shlex.quote(log)} 2>&1", "end script", ""]
    return "\n".join(lines)


class Upstart(Supervisor):
    name = "upstart"
    directory = "/etc/init"
    restart_policies = ("no", "on-failure", "always")

    def detect(self, root: Path = Path("/")) -> bool:
        try:
            exe = (root / "proc/1/exe").resolve().name
        except OSError:
            return False
        return exe == "upstart" or (exe == "init" and (root / "sbin/initctl").exists()
                                    and (root / "etc/init").is_dir() and not (root / "run/systemd/system").exists())

    def daemon_files(self, unit: DaemonUnit) -> list[UnitFile]:
        extra = ["limit nofile 1048576 1048576", f"# dockyardd writes and locks its PID file: {unit.pidfile}"]
        text = job(unit.description, "(local-filesystems and net-device-up IFACE!=lo)", unit.command(),
                   unit.environment, "always", unit.stop_timeout, unit.log_file or f"/var/log/{unit.name}.log", extra)
        return [UnitFile(f"{unit.name}.conf", text)]

    def container_files(self, unit: ContainerUnit) -> list[UnitFile]:
        text = job(unit.description or f"dockyard container {unit.container}", f"started {unit.daemon}", unit.command,
                   (), unit.restart, unit.kill_timeout, f"/var/log/{unit.name}.log")
        return [UnitFile(f"{unit.name}.conf", text)]

    def activate(self, name: str, files: list[UnitFile] | tuple[UnitFile, ...]) -> list[list[str]]:
        return [["initctl", "reload-configuration"], ["initctl", "start", name]]


@hookimpl
def dockyard_supervisors(kernel: object) -> list[SupervisorBackend]:
    return [SupervisorBackend("upstart", factory=Upstart, description="upstart jobs",
                              capabilities=frozenset({"restart", "pidfile"}), detect_order=20)]
