"""Variable interpolation (``$VAR``, ``${VAR:-default}``...) and ``.env`` files.

Follows the compose specification's interpolation section: ``$$`` is a literal dollar;
``${VAR:-d}`` / ``${VAR-d}`` give a default when VAR is unset-or-empty / unset;
``${VAR:?err}`` / ``${VAR?err}`` fail with ``err``; ``${VAR:+r}`` / ``${VAR+r}`` substitute
``r`` when VAR is set-and-non-empty / set. Defaults may contain further interpolation.
Anything else after a ``$`` is an invalid interpolation format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dockyard_compose.errors import ComposeError

_NAME = re.compile(r"[_A-Za-z][_A-Za-z0-9]*")
_OPS = (":-", ":?", ":+", "-", "?", "+")


class InterpolationError(ValueError):
    """Raised with a message; the caller adds the file and path."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= n:
            raise InterpolationError(f"invalid interpolation format for {text!r}: a lone '$' at the end "
                                     "(write '$$' for a literal dollar)")
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            end = _closing_brace(text, i + 2)
            if end < 0:
                raise InterpolationError(f"invalid interpolation format for {text!r}: missing '}}'")
            out.append(_braced(text[i + 2:end], text, env))
            i = end + 1
            continue
        m = _NAME.match(text, i + 1)
        if not m:
            raise InterpolationError(f"invalid interpolation format for {text!r}: '$' must be followed by "
                                     "a variable name, '{' or '$' (write '$$' for a literal dollar)")
        out.append(env.get(m.group(0), ""))
        i = m.end()
    return "".join(out)


def _closing_brace(text: str, start: int) -> int:
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def _braced(inner: str, whole: str, env: Mapping[str, str]) -> str:
    m = _NAME.match(inner)
    if not m:
        raise InterpolationError(f"invalid interpolation format for {whole!r}: "
                                 f"'${{{inner}}}' does not start with a variable name")
    name, rest = m.group(0), inner[m.end():]
    if not rest:
        return env.get(name, "")
    op = next((o for o in _OPS if rest.startswith(o)), None)
    if op is None:
        raise InterpolationError(f"invalid interpolation format for {whole!r}: unexpected {rest[0]!r} after "
                                 f"'{name}' (expected one of {', '.join(_OPS)} or '}}')")
    arg = rest[len(op):]
    value = env.get(name)
    is_set = value is not None
    non_empty = bool(value)
    if op in (":-", "-"):
        ok = non_empty if op == ":-" else is_set
        return value if ok else interpolate(arg, env)  # type: ignore[return-value]
    if op in (":?", "?"):
        ok = non_empty if op == ":?" else is_set
        if not ok:
            msg = interpolate(arg, env) if arg else f"variable {name} is {'empty or unset' if op == ':?' else 'unset'}"
            raise InterpolationError(f"required variable {name} is missing a value: {msg}")
        return value  # type: ignore[return-value]
    ok = non_empty if op == ":+" else is_set
    return interpolate(arg, env) if ok else ""


def interpolate_tree(data: Any, env: Mapping[str, str], file: str,
                     loc: tuple[str | int, ...] = ()) -> Any:
    """Interpolate every string value (not the keys) of a parsed compose file."""
    if isinstance(data, str):
        try:
            return interpolate(data, env)
        except InterpolationError as exc:
            raise ComposeError(str(exc), file, loc) from None
    if isinstance(data, dict):
        return {k: interpolate_tree(v, env, file, (*loc, k)) for k, v in data.items()}
    if isinstance(data, list):
        return [interpolate_tree(v, env, file, (*loc, i)) for i, v in enumerate(data)]
    return data


# --- .env files -------------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}


def parse_env_file(path: str | Path, env: Mapping[str, str] | None = None,
                   interpolate_values: bool = True) -> dict[str, str]:
    """Parse a ``.env`` / ``env_file`` file: ``KEY=VALUE`` lines, ``export``, comments, quotes.

    Single quotes are literal; double quotes understand ``\\n``-style escapes; unquoted and
    double-quoted values interpolate earlier keys and ``env``. A line ``KEY`` alone takes the
    value from ``env`` if present (and is skipped otherwise).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ComposeError(f"cannot read env file: {exc.strerror}", str(path)) from exc
    result: dict[str, str] = {}
    lookup = _Chain(result, env or {})
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[7:].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not _NAME.fullmatch(key) and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", key):
            raise ComposeError(f"line {lineno}: invalid variable name {key!r} (expected NAME=VALUE)", str(path))
        if not sep:
            if env is not None and key in env:
                result[key] = env[key]
            continue
        value = value.strip()
        try:
            if value.startswith("'"):
                end = value.find("'", 1)
                if end < 0:
                    raise InterpolationError("unterminated single quote")
                result[key] = value[1:end]
            elif value.startswith('"'):
                buf, i = [], 1
                while i < len(value) and value[i] != '"':
                    if value[i] == "\\" and i + 1 < len(value):
                        buf.append(_ESCAPES.get(value[i + 1], "\\" + value[i + 1]))
                        i += 2
                        continue
                    buf.append(value[i])
                    i += 1
                if i >= len(value):
                    raise InterpolationError("unterminated double quote")
                s = "".join(buf)
                result[key] = interpolate(s, lookup) if interpolate_values else s
            else:
                value = re.split(r"\s+#", value, maxsplit=1)[0].rstrip()
                result[key] = interpolate(value, lookup) if interpolate_values else value
        except InterpolationError as exc:
            raise ComposeError(f"line {lineno}: {exc}", str(path)) from None
    return result


class _Chain(Mapping[str, str]):
    """Lookup in the process environment first (it wins over .env), then in what was parsed."""

    def __init__(self, parsed: Mapping[str, str], outer: Mapping[str, str]) -> None:
        self.parsed, self.outer = parsed, outer

    def __getitem__(self, key: str) -> str:
        if key in self.outer:
            return self.outer[key]
        return self.parsed[key]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter({**self.parsed, **self.outer})

    def __len__(self) -> int:
        return len({**self.parsed, **self.outer})
