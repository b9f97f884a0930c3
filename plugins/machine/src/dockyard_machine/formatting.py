"""Docker Machine's output formats: a small Go ``text/template`` and Go's ``tabwriter``.

``ls --format`` and ``inspect --format`` take Go templates; what they use is field access
(``{{.Name}}``, ``{{ .Driver.IPAddress }}``, ``{{.}}``), literal text and, for ``inspect``, the
functions ``json`` and ``prettyjson``. That subset is implemented here (about 100 lines, no
dependency); anything else (``if``, ``range``, pipelines, other functions) is refused with a
``template:`` error naming it, rather than printed wrong. Values print as Go's ``fmt`` prints
them: ``<no value>`` for a missing map key, ``[a b]`` for a list, ``map[k:v]`` for a map.

``ls`` (and a ``table`` format) align columns as Go's ``tabwriter.NewWriter(os.Stdout, 5, 1, 3,
' ', 0)``: every tab-terminated cell is padded to its column's widest cell plus 3 (at least 5);
the text after a line's last tab is not aligned.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dockyard.errors import InvalidArgument

_ACTION = re.compile(r"\{\{(-?)\s*(.*?)\s*(-?)\}\}", re.S)
_FIELD = re.compile(r"^\.(?:[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)?$")
MISSING = "<no value>"


def go_string(value: Any) -> str:
    """A value as Go's ``fmt.Sprint`` prints the decoded JSON it came from."""
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(go_string(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "map[" + " ".join(f"{k}:{go_string(value[k])}" for k in sorted(value)) + "]"
    return str(value)


def _go_json(value: Any, indent: int | None = None) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False, separators=None if indent else (",", ":"))


FUNCS: dict[str, Callable[[Any], str]] = {
    "json": lambda v: _go_json(v),
    "prettyjson": lambda v: _go_json(v, 4),
}


@dataclass(frozen=True)
class Template:
    """A parsed template: literal text and actions (a field path, maybe under a function)."""

    parts: tuple[tuple[str, str, str], ...]  # (kind: text|field, value, function name or "")
    source: str

    def execute(self, data: Any, *, strict: str = "") -> str:
        """Render over ``data`` (a dict). ``strict`` names the type of a struct-like ``data``:
        a missing field is then an error (Go's ``can't evaluate field``), not ``<no value>``."""
        out = []
        for kind, value, func in self.parts:
            if kind == "text":
                out.append(value)
                continue
            result = self._lookup(data, value, strict)
            if func:
                out.append(FUNCS[func](None if result is _Missing else result))
            else:
                out.append(MISSING if result is _Missing else go_string(result))
        return "".join(out)

    def _lookup(self, data: Any, path: str, strict: str) -> Any:
        value = data
        for i, name in enumerate(p for p in path.split(".") if p):
            if not isinstance(value, Mapping):
                raise InvalidArgument(f'template: executing "" at <{path}>: can\'t evaluate field {name} '
                                      f"in type {type(value).__name__}")
            if name in value:
                value = value[name]
            elif strict and i == 0:
                raise InvalidArgument(f'template: executing "" at <{path}>: can\'t evaluate field {name} '
                                      f"in type {strict}")
            else:
                return _Missing
        return value


class _Missing:
    """A map key that is not there (Go prints ``<no value>``)."""


def parse(source: str) -> Template:
    """Parse ``source``; raise :class:`InvalidArgument` (``template: ...``) for what this subset
    does not do."""
    parts: list[tuple[str, str, str]] = []
    pos = 0
    for m in _ACTION.finditer(source):
        text = source[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        if text:
            parts.append(("text", text, ""))
        body = m.group(2)
        words = body.split()
        func = ""
        if len(words) == 2 and words[0] in FUNCS:
            func, body = words[0], words[1]
        elif len(words) != 1:
            raise InvalidArgument(f"template: unsupported action {{{{{body}}}}}: only field access "
                                  f"({{{{.Name}}}}) and the functions {', '.join(sorted(FUNCS))} are supported")
        if not _FIELD.match(body):
            raise InvalidArgument(f"template: unsupported action {{{{{m.group(2)}}}}}: only field access "
                                  f"({{{{.Name}}}}) and the functions {', '.join(sorted(FUNCS))} are supported")
        parts.append(("field", body, func))
        pos = m.end()
        if m.group(3):
            rest = source[pos:]
            pos += len(rest) - len(rest.lstrip())
    if "{{" in source[pos:]:
        raise InvalidArgument(f"template: unclosed action in {source!r}")
    if source[pos:]:
        parts.append(("text", source[pos:], ""))
    return Template(tuple(parts), source)


def parse_format(fmt: str, default: str) -> tuple[Template, bool]:
    """Docker Machine's ``parseFormat``: ``table`` in front means a header row and aligned
    columns; ``\\t`` and ``\\n`` written literally become a tab and a newline; a newline ends
    every item."""
    final = fmt or default
    table = final.startswith("table")
    if table:
        final = final[len("table"):]
    final = final.strip(" ").replace("\\t", "\t").replace("\\n", "\n")
    return parse(final + "\n"), table


def tabwrite(text: str, minwidth: int = 5, padding: int = 3) -> str:
    """Go's ``tabwriter`` with padchar ' ' and no flags, over whole lines of ``text``."""
    lines = text.split("\n")
    trailing = lines.pop() if lines and lines[-1] == "" else None
    cells = [line.split("\t") for line in lines]
    ncols = max((len(c) - 1 for c in cells), default=0)
    widths = []
    for j in range(ncols):
        width = max((len(c[j]) for c in cells if len(c) - 1 > j), default=0)
        widths.append(max(minwidth, width + padding))
    out = []
    for row in cells:
        out.append("".join(cell.ljust(widths[j]) if j < len(row) - 1 else cell for j, cell in enumerate(row)))
    return "\n".join(out) + ("\n" if trailing is not None else "")


def render_items(template: Template, items: Sequence[Mapping[str, Any]], headers: Mapping[str, str] | None,
                 strict: str) -> str:
    """Every item through ``template``, with the header row first when ``headers`` is given
    (then the whole output is tab-aligned)."""
    text = "".join(template.execute(item, strict=strict) for item in items)
    if headers is None:
        return text
    return tabwrite(template.execute(headers, strict=strict) + text)


__all__ = ["FUNCS", "MISSING", "Template", "go_string", "parse", "parse_format", "render_items", "tabwrite"]
