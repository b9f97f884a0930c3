"""JSON for the command line's fast paths, on CPython's C accelerator (``_json``) alone.

``import json`` imports ``re`` and with it ``enum``, ``functools`` and the regex compiler: 3 ms
on a quiet 2-core machine, 8-9 ms on a loaded one (``-X importtime``, min of 10, 2026-12-07),
for a ``dockyard run`` whose whole client side should cost about 15 ms. The C scanner and string
encoder ``json`` itself uses need none of that. :func:`loads` decodes exactly what
``json.loads`` decodes (it is the same scanner); :func:`dumps` writes ``json.dumps``'s compact
form for the types a request body holds (dict with str keys, list, tuple, str, int, bool, None,
finite float). Without ``_json`` (another interpreter) both use ``json``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself costs 3-9 ms of imports (collections, functools, re)
if TYPE_CHECKING:
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None  # type: ignore[assignment]


class _Context:
    """What ``_json.make_scanner`` reads from a ``json.JSONDecoder``."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(lambda name: float(name.replace("Infinity", "inf")))
    memo: dict[str, str] = {}


_scan = _json.make_scanner(_Context) if _json is not None else None
_WS = " \t\n\r"


def loads(data: str | bytes | bytearray) -> Any:
    """The value of a JSON document (bytes are UTF-8); ValueError when it is not one."""
    if _scan is None:  # pragma: no cover
        import json

        return json.loads(data)
    text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
    start = len(text) - len(text.lstrip(_WS))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"expecting a JSON value at {exc.value}") from None
    if text[end:].strip(_WS):
        raise ValueError(f"extra data after the JSON value at {end}")
    return value


def dumps(obj: Any) -> str:
    """``json.dumps(obj, separators=(",", ":"))`` for plain data; TypeError for anything else."""
    if _json is None:  # pragma: no cover
        import json

        return json.dumps(obj, separators=(",", ":"))
    out: list[str] = []
    _encode(obj, out.append, _json.encode_basestring_ascii)
    return "".join(out)


def _encode(obj: Any, put: Any, string: Any) -> None:
    if isinstance(obj, str):
        put(string(obj))
    elif obj is None:
        put("null")
    elif obj is True:
        put("true")
    elif obj is False:
        put("false")
    elif isinstance(obj, int):
        put(int.__repr__(obj))
    elif isinstance(obj, float):
        if obj != obj or obj in (float("inf"), float("-inf")):
            raise ValueError(f"out of range float value {obj!r}")
        put(float.__repr__(obj))
    elif isinstance(obj, dict):
        put("{")
        for i, (key, value) in enumerate(obj.items()):
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            put("," if i else "")
            put(string(key))
            put(":")
            _encode(value, put, string)
        put("}")
    elif isinstance(obj, (list, tuple)):
        put("[")
        for i, value in enumerate(obj):
            put("," if i else "")
            _encode(value, put, string)
        put("]")
    else:
        raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
