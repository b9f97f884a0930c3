"""Terminal output: progress lines (rich on a terminal, plain text otherwise) and coloured log
prefixes. rich is imported only when a terminal (or forced colour) needs it: it costs ~40 ms of
start-up that a piped or scripted ``compose up`` does not need."""

from __future__ import annotations

import sys
import threading
from contextlib import contextmanager
from typing import Any

_COLORS = ("cyan", "yellow", "green", "magenta", "blue", "bright_red", "bright_cyan", "bright_yellow",
           "bright_green", "bright_magenta", "bright_blue")
_DONE = {"Created", "Started", "Running", "Recreated", "Removed", "Stopped", "Healthy", "Exited", "Pulled",
         "Built", "Killed", "Restarted", "Skipped", "Pushed", "Paused", "Unpaused"}


class Printer:
    """Progress of compose operations on stderr; plain text when not on a terminal."""

    def __init__(self, quiet: bool = False, color: bool | None = None) -> None:
        self.quiet = quiet
        self._color = color
        self._rich = bool(color) or (color is None and sys.stderr.isatty())
        self._console: Any = None
        self._lock = threading.Lock()

    @property
    def console(self) -> Any:
        """The rich console (created on first use)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=True, highlight=False, soft_wrap=True, no_color=self._color is False,
                                    force_terminal=True if self._color else None)
        return self._console

    def _print(self, rich_text: str, plain_text: str) -> None:
        with self._lock:
            if self._rich:
                self.console.print(rich_text)
            else:
                sys.stderr.write(plain_text + "\n")
                sys.stderr.flush()

    def event(self, kind: str, name: str, status: str, detail: str = "") -> None:
        if self.quiet:
            return
        if status in _DONE:
            mark, color = "✔", "green"
        elif status in ("Error", "Unhealthy"):
            mark, color = "✘", "red"
        else:
            mark, color = "⠿", "blue"
        tail = f" {detail}" if detail else ""
        self._print(f" [{color}]{mark}[/] {kind} {name}  [bold]{status}[/]" + (f" [dim]{detail}[/]" if detail else ""),
                    f" {mark} {kind} {name}  {status}{tail}")

    def warn(self, message: str) -> None:
        if self._rich:
            from rich.markup import escape

            self._print(f"[yellow]WARN[/] {escape(message)}", "")
        else:
            self._print("", f"WARN {message}")

    def info(self, message: str) -> None:
        if not self.quiet:
            if self._rich:
                from rich.markup import escape

                message_markup = escape(message)
            else:
                message_markup = message
            self._print(message_markup, message)

    @contextmanager
    def status(self, message: str) -> Any:
        if self.quiet or not self._rich or not self.console.is_terminal:
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
