"""Tests that run dockyardd (and container services) under a real supervisor: the supervisor
backends' own tests and ``dockyard generate``'s.

- :class:`SupervisedDaemon`: a dockyardd on its own roots under ``root`` (socket
  ``root/run/dockyard.sock``): the :class:`~dockyard.specs.supervisor.DaemonUnit` that runs it
  (:meth:`~SupervisedDaemon.daemon_unit`), a client, whether it answers, its containers removed,
  the processes still naming its root.
- :func:`start_supervisord`: a supervisord of the test's own in a directory (its config, its
  ``conf.d`` of programs, its control socket), ``nodaemon``; :func:`supervisorctl` drives it.

The supervisor is the caller's to stop; nothing here is imported by a kernel build.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dockyard.specs.supervisor import DaemonUnit

__all__ = ["SUPERVISORD_CONF", "SupervisedDaemon", "start_supervisord", "supervisorctl"]

BIN = Path(sys.executable).parent

SUPERVISORD_CONF = """[unix_http_server]
file={d}/supervisor.sock
[supervisord]
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}
nodaemon=true
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{d}/supervisor.sock
[include]
files = {d}/conf.d/*.conf
"""


def start_supervisord(d: Path) -> subprocess.Popen[bytes]:
    """supervisord with ``d/supervisord.conf`` (:data:`SUPERVISORD_CONF`, written here; programs
    in ``d/conf.d``, made here), in its own session. Stop it with SIGTERM: it stops its
    programs, then exits."""
    (d / "conf.d").mkdir(parents=True, exist_ok=True)
    (d / "supervisord.conf").write_text(SUPERVISORD_CONF.format(d=d))
    return subprocess.Popen(["supervisord", "-c", str(d / "supervisord.conf"), "-n"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def supervisorctl(d: Path, *args: str, check: bool = False) -> str:
    """``supervisorctl`` of the supervisord of :func:`start_supervisord` in ``d``; its stdout.
    ``check``: AssertionError when it exits other than 0 or 3 (3: a status with something not
    running)."""
    res = subprocess.run(["supervisorctl", "-c", str(d / "supervisord.conf"), *args], capture_output=True,
                         text=True, timeout=60)
    if check and res.returncode not in (0, 3):
        raise AssertionError(f"supervisorctl {' '.join(args)}: {res.stdout}{res.stderr}")
    return res.stdout


class SupervisedDaemon:
    """A dockyardd a supervisor runs, on ``root/data`` and ``root/run``; see the module doc."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sock = root / "run" / "dockyard.sock"

    def daemon_unit(self, log_file: Path, **fields: Any) -> DaemonUnit:
        """The unit of this daemon (this venv's ``dockyardd``, its roots, its socket, its PID
        file); ``fields`` are more of the unit's (``stop_timeout=10``...)."""
        from dockyard.specs.supervisor import DaemonUnit

        return DaemonUnit(dockyardd=(str(BIN / "dockyardd"), "--data-root", str(self.root / "data"),
                                     "--exec-root", str(self.root / "run")),
                          hosts=(f"unix://{self.sock}",), pidfile=str(self.root / "run" / "dockyardd.pid"),
                          log_file=str(log_file), **fields)

    def client(self) -> Any:
        from dockyard.client import Client

        return Client(f"unix://{self.sock}", timeout=30)

    def answers(self) -> bool:
        try:
            self.client().get("/_ping")
            return True
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def remove_containers(self) -> None:
        """``rm -f`` every container, when the daemon still answers (the caller purges after)."""
        try:
            for c in self.client().get("/containers/json", all=1) or []:
                self.client().delete(f"/containers/{c['Id']}", force=1)
        except Exception:  # noqa: BLE001 - the daemon may be down; the caller purges
            pass

    def processes_left(self) -> list[str]:
        """The PIDs whose command line names this daemon's root."""
        needle = str(self.root).encode()
        left = []
        for pid in os.listdir("/proc"):
            if pid.isdigit():
                try:
                    if needle in Path(f"/proc/{pid}/cmdline").read_bytes():
                        left.append(pid)
                except OSError:
                    pass
        return left
