"""Interactive streams: attach for ``run``, hijacked exec for ``exec``. The session itself (stdin
pumped then half-closed, output demultiplexed, raw terminal for ``-it``) is dockyard-core's
:func:`dockyard.client.attach_session`, the same as ``dockyard run``/``exec``; what is compose's
is the order of calls around it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from dockyard.client import attach_session
from dockyard_compose import engine as E


def run_attached(engine: E.Engine, cid: str, tty: bool, interactive: bool, start: Callable[[], Any]) -> int:
    """Attach before start (so no output is missed), start, copy, then read the exit code."""
    conn = engine.hijack(f"/containers/{cid}/attach",
                         {"stream": 1, "stdout": 1, "stderr": 1, "stdin": 1 if interactive else 0, "logs": 0})
    start()
    attach_session(conn, tty, interactive)
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
    attach_session(conn, tty, interactive)
    for _ in range(100):
        info = engine.get(f"/exec/{ex['Id']}/json")
        if not info.get("Running"):
            return int(info.get("ExitCode") or 0)
        import time

        time.sleep(0.05)
    return int(info.get("ExitCode") or 0)
