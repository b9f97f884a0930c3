"""Terminal output: progress lines (rich) and coloured log prefixes."""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Any

from rich.console import Console

_COLORS = ("cyan", "yellow", "green", "magenta", "blue", "bright_red", "bright_cyan", "bright_yellow",
           "bright_green", "bright_magenta", "bright_blue")
_DONE = {"Created", "Started", "Running", "Recreated", "Removed", "Stopped", "Healthy", "Exited", "Pulled",
         "Built", "Killed", "Restarted", "Skipped", "Pushed", "Paused", "Unpaused"}


class Printer:
    """Progress of compose operations on stderr; plain text when not on a terminal."""

    def __init__(self, quiet: bool = False, color: bool | None = None) -> None:
        self.console = Console(stderr=True, highlight=False, soft_wrap=True, no_color=color is False,
                               force_terminal=True if color else None)
        self.quiet = quiet
        self._lock = threading.Lock()

    def event(self, kind: str, name: str, status: str, detail: str = "") -> None:
        if self.quiet:
            return
        mark = "[green]✔[/]" if status in _DONE else ("[red]✘[/]" if status in ("Error", "Unhealthy")
                                                        else "[blue]⠿[/]")
        text = f" {mark} {kind} {name}  [bold]{status}[/]" + (f" [dim]{detail}[/]" if detail else "")
        with self._lock:
            self.console.print(text)

    def warn(self, message: str) -> None:
        with self._lock:
            self.console.print(f"[yellow]WARN[/] {message}", markup=True)

    def info(self, message: str) -> None:
        if not self.quiet:
            with self._lock:
                self.console.print(message, markup=False)

    @contextmanager
    def status(self, message: str) -> Any:
        if self.quiet or not self.console.is_terminal:
            yield
            return
        with self.console.status(message):
            yield


class LogPrinter:
    """``web-1  | line`` with one colour per container, whole lines only."""

    def __init__(self, names: list[str], color: bool | None = None, prefix: bool = True,
                 timestamps: bool = False) -> None:
        self.width = max((len(n) for n in names), default=0)
        self.color = sys.stdout.isatty() if color is None else color
        self.prefix = prefix
        self._colors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._partial: dict[tuple[str, int], bytes] = {}
        for n in names:
            self.color_of(n)

    def color_of(self, name: str) -> str:
        if name not in self._colors:
            self._colors[name] = _COLORS[len(self._colors) % len(_COLORS)]
        return self._colors[name]

    def _prefix(self, name: str) -> str:
        if not self.prefix:
            return ""
        text = f"{name.ljust(self.width)}  | "
        if self.color:
            import click

            fg = self.color_of(name).replace("bright_", "bright_")
            return click.style(text, fg=fg)
        return text

    def feed(self, name: str, stream: int, data: bytes) -> None:
        key = (name, stream)
        buf = self._partial.get(key, b"") + data
        *lines, rest = buf.split(b"\n")
        self._partial[key] = rest
        if lines:
            self._emit(name, stream, lines)

    def flush(self, name: str) -> None:
        for key in [k for k in self._partial if k[0] == name]:
            rest = self._partial.pop(key)
            if rest:
                self._emit(name, key[1], [rest])

    def line(self, name: str, text: str) -> None:
        self._emit(name, 1, [text.encode()])

    def _emit(self, name: str, stream: int, lines: list[bytes]) -> None:
        out = sys.stdout
        pre = self._prefix(name)
        with self._lock:
            for raw in lines:
                out.write(pre + raw.decode(errors="replace").rstrip("\r") + "\n")
            out.flush()
