"""Interactive streams: attach for ``run``, hijacked exec for ``exec`` (stdin pumped, half-close)."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

from dockyard_compose import engine as E


@contextmanager
def raw_terminal(enabled: bool) -> Any:
    if not enabled or not sys.stdin.isatty():
        yield
        return
    import termios
    import tty

    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _pump_stdin(conn: E.Hijacked) -> None:
    try:
        fd = sys.stdin.fileno()
        while True:
            data = os.read(fd, 4096)
            if not data:
                break
            conn.send(data)
    except (OSError, ValueError):
        pass
    finally:
        conn.close_write()


def copy_output(conn: E.Hijacked, tty: bool) -> None:
    out = sys.stdout.buffer
    err = sys.stderr.buffer
    if tty:
        while True:
            data = conn.read()
            if not data:
                return
            out.write(data)
            out.flush()
    for stream, data in E.demux(conn.read):
        target = err if stream == 2 else out
        target.write(data)
        target.flush()


def _session(conn: E.Hijacked, tty: bool, interactive: bool) -> None:
    if interactive:
        threading.Thread(target=_pump_stdin, args=(conn,), daemon=True).start()
    else:
        conn.close_write()
    with raw_terminal(tty and interactive):
        copy_output(conn, tty)
    conn.close()


def run_attached(engine: E.Engine, cid: str, tty: bool, interactive: bool, start: Callable[[], Any]) -> int:
    """Attach before start (so no output is missed), start, copy, then read the exit code."""
    conn = engine.hijack(f"/containers/{cid}/attach",
                         {"stream": 1, "stdout": 1, "stderr": 1, "stdin": 1 if interactive else 0, "logs": 0})
    start()
    _session(conn, tty, interactive)
    res = engine.post(f"/containers/{cid}/wait", timeout=None)
    return int((res or {}).get("StatusCode", 0))


def exec_in(engine: E.Engine, cid: str, cmd: list[str], *, tty: bool, interactive: bool, detach: bool,
            user: str | None = None, workdir: str | None = None, env: list[str] | None = None,
            privileged: bool = False) -> int:
    body: dict[str, Any] = {"Cmd": cmd, "Tty": tty, "AttachStdin": interactive and not detach,
                            "AttachStdout": not detach, "AttachStderr": not detach, "Privileged": privileged,
                            "Detach": detach}
    if user:
        body["User"] = user
    if workdir:
        body["WorkingDir"] = workdir
    if env:
        body["Env"] = env
    ex = engine.post(f"/containers/{cid}/exec", body)
    if detach:
        engine.post(f"/exec/{ex['Id']}/start", {"Detach": True, "Tty": tty})
        return 0
    conn = engine.hijack(f"/exec/{ex['Id']}/start", body={"Detach": False, "Tty": tty})
    if tty and sys.stdout.isatty():
        try:
            size = os.get_terminal_size()
            engine.post(f"/exec/{ex['Id']}/resize", h=size.lines, w=size.columns)
        except Exception:  # noqa: BLE001 - a resize failure must not break the session
            pass
    _session(conn, tty, interactive)
    for _ in range(100):
        info = engine.get(f"/exec/{ex['Id']}/json")
        if not info.get("Running"):
            return int(info.get("ExitCode") or 0)
        import time

        time.sleep(0.05)
    return int(info.get("ExitCode") or 0)
