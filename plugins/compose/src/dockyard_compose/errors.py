"""Compose errors: each names the file, the path inside it and what was expected."""

from __future__ import annotations

from dockyard.errors import InvalidArgument


def format_path(loc: tuple[str | int, ...] | list[str | int]) -> str:
    """``("services", "web", "ports", 1)`` -> ``services.web.ports[1]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


class ComposeError(InvalidArgument):
    """A compose file is malformed or describes an impossible project."""

    def __init__(self, message: str, file: str | None = None,
                 path: tuple[str | int, ...] | list[str | int] | str | None = None) -> None:
        self.message = message
        self.file = file
        self.path = path if isinstance(path, str) or path is None else format_path(path)
        super().__init__(self._render())

    def _render(self) -> str:
        where = ": ".join(p for p in (self.file, self.path) if p)
        return f"{where}: {self.message}" if where else self.message


class ComposeValidationError(ComposeError):
    """Several located problems found at once (all reported, not just the first)."""

    def __init__(self, errors: list[ComposeError]) -> None:
        self.errors = errors
        InvalidArgument.__init__(self, "\n".join(str(err) for err in errors))
        self.message = str(self)
        self.file = errors[0].file if errors else None
        self.path = errors[0].path if errors else None

    def _render(self) -> str:  # pragma: no cover - __init__ bypasses it
        return "\n".join(str(err) for err in self.errors)
