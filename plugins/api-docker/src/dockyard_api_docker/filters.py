"""Docker's ``filters`` query parameter, in both shapes clients send.

The CLI sends a map form ``{"label":{"a=1":true}}``; docker-py and compose a list form
``{"label":["a=1"]}``. Keys are AND-ed; several values of one key are OR-ed, except ``label``
where every value must match (compose relies on it).
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field

from dockyard.errors import InvalidArgument


@dataclass
class Filters:
    values: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse(cls, raw: str | None, allowed: set[str]) -> Filters:
        if not raw:
            return cls()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"invalid filters: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidArgument("invalid filters: expected a JSON object")
        values: dict[str, list[str]] = {}
        for key, val in data.items():
            if key not in allowed:
                raise InvalidArgument(f"invalid filter '{key}'")
            if isinstance(val, dict):
                values[key] = [k for k, on in val.items() if on]
            elif isinstance(val, list):
                values[key] = [str(v) for v in val]
            elif isinstance(val, str):
                values[key] = [val]
            else:
                raise InvalidArgument(f"invalid filter '{key}': expected a list or an object")
        return cls(values)

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def get(self, key: str) -> list[str]:
        return self.values.get(key, [])

    def match_any(self, key: str, *candidates: str, glob: bool = False) -> bool:
        """True when ``key`` is absent, or one of its values matches one of ``candidates``."""
        wanted = self.values.get(key)
        if not wanted:
            return True
        for w in wanted:
            for c in candidates:
                if (fnmatch.fnmatchcase(c, w) if glob else c == w):
                    return True
        return False

    def match_labels(self, labels: dict[str, str], key: str = "label") -> bool:
        """Every ``label`` value (``k`` or ``k=v``) must match."""
        for expr in self.values.get(key, []):
            k, sep, v = expr.partition("=")
            if k not in labels or (sep and labels[k] != v):
                return False
        return True

    def match_bool(self, key: str, value: bool) -> bool:
        wanted = self.values.get(key)
        if not wanted:
            return True
        parsed = set()
        for w in wanted:
            lw = w.lower()
            if lw in ("1", "true"):
                parsed.add(True)
            elif lw in ("0", "false"):
                parsed.add(False)
            else:
                raise InvalidArgument(f"invalid filter '{key}={w}': expected true or false")
        return value in parsed
