"""dockyard engine supervisor for targets whose PID 1 is not systemd (stdlib only).

Uploaded by dockyard-provision-ssh to ``<root>/<name>/lib/supervise.py`` and started detached
(its own session, no terminal) by the target's agent. It does for one engine what the systemd
unit does where systemd runs:

* ``Restart=on-failure``: an engine that exits with a non-zero status or a signal is started
  again after ``RESTART_SEC``; more than ``BURST`` failures within ``INTERVAL`` seconds and it
  gives up (``StartLimitBurst``), recording ``failed``. A clean exit (status 0) is final.
* ``KillMode=process``: stopping (SIGTERM to the supervisor) sends SIGTERM to the engine alone,
  then SIGKILL after ``STOP_TIMEOUT`` -- never to its containers' monitors, which run in
  sessions of their own, so containers outlive the engine (live-restore).
* a pidfile held with an exclusive lock for the supervisor's lifetime (a second supervisor of
  the same engine refuses), and a status file (JSON) naming the engine's pid, its last exit and
  the number of restarts: what ``engine_state`` reports.

Each start reads ``engine.json`` (``argv``, ``env``) afresh, so an install that changed the
flags only has to restart it.
"""

from __future__ import annotations

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

RESTART_SEC = 1.0
BURST = 5
INTERVAL = 60.0
STOP_TIMEOUT = 20.0


def write_status(path: str, **status: object) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(status, fh)
    os.replace(tmp, path)


def describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


def main(home: str) -> int:
    pidfile, status_file = os.path.join(home, "supervisor.pid"), os.path.join(home, "supervisor.json")
    fd = os.open(pidfile, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        print(f"supervise: another supervisor holds {pidfile}", file=sys.stderr)
        return 1
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())

    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def stop(_sig: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    failures: list[float] = []
    restarts = 0
    last_exit = ""
    while not stopping:
        with open(os.path.join(home, "engine.json")) as fh:
            engine = json.load(fh)
        env = dict(os.environ)
        env.update(engine.get("env") or {})
        with open(os.path.join(home, "log", "dockyardd.log"), "ab") as log:
            child = subprocess.Popen(engine["argv"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     env=env, cwd="/")
        write_status(status_file, state="running", engine_pid=child.pid, started=time.time(),
                     restarts=restarts, last_exit=last_exit)
        kill_at = None
        while True:
            try:
                code = child.wait(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                if stopping:
                    kill_at = kill_at or time.monotonic() + STOP_TIMEOUT
                    if time.monotonic() > kill_at:
                        child.kill()  # the engine alone: KillMode=process
        last_exit = describe(code)
        if stopping:
            break
        if code == 0:
            write_status(status_file, state="exited", engine_pid=0, restarts=restarts, last_exit=last_exit)
            return 0
        now = time.monotonic()
        failures = [t for t in failures if now - t < INTERVAL] + [now]
        if len(failures) > BURST:
            write_status(status_file, state="failed", engine_pid=0, restarts=restarts, last_exit=last_exit)
            return 1
        write_status(status_file, state="restarting", engine_pid=0, restarts=restarts, last_exit=last_exit)
        deadline = time.monotonic() + RESTART_SEC
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.05)
        restarts += 1
    write_status(status_file, state="stopped", engine_pid=0, restarts=restarts, last_exit=last_exit)
    os.unlink(pidfile)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
