"""``dockyard build``'s output off a terminal: plain lines, and no rich import."""

from __future__ import annotations

import io
import subprocess
import sys

from dockyard_builder.cli import _Bars, _console, _Plain


def test_a_pipe_gets_plain_lines_and_pull_status_changes_once() -> None:
    buf = io.StringIO()
    console = _console(buf)
    assert isinstance(console, _Plain)
    bars = _Bars(console)
    bars.update({"status": "Pulling from library/base"})
    for current in (0, 10, 20):
        bars.update({"id": "0123456789abcdef", "status": "Downloading",
                     "progressDetail": {"current": current, "total": 20}})
    bars.update({"id": "0123456789abcdef", "status": "Pull complete"})
    console.print("Step 1/1 : FROM base\n", end="", style="bold cyan")
    assert buf.getvalue().splitlines() == ["Pulling from library/base", "0123456789ab: Downloading",
                                           "0123456789ab: Pull complete", "Step 1/1 : FROM base"]


def test_building_off_a_terminal_does_not_import_rich() -> None:
    code = ("import sys, io; from dockyard_builder import cli; cli._console(io.StringIO()); "
            "print('rich' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
