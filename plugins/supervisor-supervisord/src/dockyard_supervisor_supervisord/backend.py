"""supervisord: one ``[program:NAME]`` file in ``/etc/supervisor/conf.d``.

supervisord signals the program's process only (``stopasgroup``/``killasgroup`` false): a stop
sends SIGTERM to dockyardd alone and SIGKILL after ``stopwaitsecs``, so containers (under
conmon, in sessions of their own) keep running. ``autorestart`` maps the restart policy:
``always`` -> ``true``, ``no`` -> ``false``, ``on-failure`` -> ``unexpected`` with
``exitcodes=0``. supervisord has no socket activation: dockyardd binds its sockets.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from dockyard.specs import hookimpl
from dockyard.specs.supervisor import ContainerUnit, DaemonUnit, Supervisor, SupervisorBackend, UnitFile

AUTORESTART = {"no": "false", "always": "true", "on-failure": "unexpected"}
#: where Debian's supervisord listens (supervisorctl's default)
SOCKETS = ("run/supervisor.sock", "var/run/supervisor.sock")


def value(text: str) -> str:
    """A value of supervisord's ini file: ``%`` doubled (it expands ``%(ENV_X)s``), one line."""
    if "\n" in text:
        raise ValueError("a supervisord value is one line")
    return text.replace("%", "%%")


def command(argv: list[str] | tuple[str, ...]) -> str:
    return value(" ".join(shlex.quote(a) for a in argv))


def environment(pairs: tuple[tuple[str, str], ...]) -> list[str]:
    if not pairs:
        return []
    return ["environment=" + ",".join(f'{k}="{value(v).replace(chr(34), chr(92) + chr(34))}"' for k, v in pairs)]


class Supervisord(Supervisor):
    name = "supervisord"
    directory = "/etc/supervisor/conf.d"
    restart_policies = ("no", "on-failure", "always")

    def detect(self, root: Path = Path("/")) -> bool:
        import stat

        for rel in SOCKETS:
            try:
                if stat.S_ISSOCK((root / rel).stat().st_mode):
                    return True
            except OSError:
                continue
        return False

    def program(self, name: str, argv: list[str] | tuple[str, ...], env: tuple[tuple[str, str], ...],
                restart: str, stop_wait: int, log: str, priority: int) -> str:
        lines = [f"[program:{name}]", f"command={command(argv)}", *environment(env), "autostart=true",
                 f"autorestart={AUTORESTART[restart]}", "exitcodes=0", "startsecs=1", "startretries=5",
                 "stopsignal=TERM", f"stopwaitsecs={stop_wait}",
                 "; the program's process alone is signalled: containers keep running",
                 "stopasgroup=false", "killasgroup=false", "redirect_stderr=true", f"stdout_logfile={value(log)}",
                 "stdout_logfile_maxbytes=10MB", f"priority={priority}", ""]
        return "\n".join(lines)

    def daemon_files(self, unit: DaemonUnit) -> list[UnitFile]:
        text = self.program(unit.name, unit.command(), unit.environment, "always", unit.stop_timeout,
                            unit.log_file or f"/var/log/{unit.name}.log", 100)
        return [UnitFile(f"{unit.name}.conf", f"; {unit.description}\n" + text)]

    def container_files(self, unit: ContainerUnit) -> list[UnitFile]:
        text = self.program(unit.name, unit.command, (), unit.restart, unit.kill_timeout,
                            f"/var/log/{unit.name}.log", 200)
        return [UnitFile(f"{unit.name}.conf", f"; {unit.description or unit.container}\n" + text)]

    def activate(self, name: str, files: list[UnitFile] | tuple[UnitFile, ...]) -> list[list[str]]:
        return [["supervisorctl", "reread"], ["supervisorctl", "update", name]]


@hookimpl
def dockyard_supervisors(kernel: object) -> list[SupervisorBackend]:
    return [SupervisorBackend("supervisord", factory=Supervisord, description="supervisord programs",
                              capabilities=frozenset({"restart"}), detect_order=40)]
