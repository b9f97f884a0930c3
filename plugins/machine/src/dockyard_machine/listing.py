"""``ls``: Docker Machine's states, filters and order, as pure functions.

States are shown as Docker Machine names them (``state.State.String()``): ``Running``,
``Stopped``, ``Error``, ``Timeout``, ``Starting``, ``Stopping``; dockyard adds ``Creating`` and
``Removing`` for the service's own transitions (Docker Machine had no record of a host while it
was being made). Filters are Docker Machine's (``commands/ls.go``): ``driver``, ``state`` and
``label`` compare without case, ``name`` is a regular expression searched in the name, ``swarm``
names a classic-swarm master (the machines of its swarm match, itself included); values of
one key are OR-ed, keys AND-ed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dockyard.errors import InvalidArgument

#: The service's (and provision drivers') state words -> what ``ls``/``status`` print.
DISPLAY = {"running": "Running", "stopped": "Stopped", "error": "Error", "none": "Error", "timeout": "Timeout",
           "starting": "Starting", "stopping": "Stopping", "creating": "Creating", "removing": "Removing"}
FILTER_KEYS = ("driver", "label", "name", "state", "swarm")


def display_state(state: str) -> str:
    return DISPLAY.get(state, state.capitalize() or "Error")


@dataclass
class Filters:
    """``--filter`` values by key (``filters`` in the API: ``{"driver": ["netns"]}``)."""

    values: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def parse_cli(cls, items: Iterable[str]) -> Filters:
        """``key=value`` strings (``ls --filter``); Docker Machine's errors for bad ones."""
        out: dict[str, list[str]] = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep:
                raise InvalidArgument("Unsupported filter syntax.")
            key = key.lower()
            if key not in FILTER_KEYS:
                raise InvalidArgument(f"Unsupported filter key '{key}'")
            out.setdefault(key, []).append(value)
        return cls(out)

    @classmethod
    def parse_json(cls, doc: Any) -> Filters:
        """The API's ``filters`` (a JSON object of lists, or Docker's ``{"k": {"v": true}}``)."""
        if doc in (None, ""):
            return cls()
        if not isinstance(doc, dict):
            raise InvalidArgument("filters must be a JSON object")
        out: dict[str, list[str]] = {}
        for key, value in doc.items():
            key = str(key).lower()
            if key not in FILTER_KEYS:
                raise InvalidArgument(f"Unsupported filter key '{key}'")
            if isinstance(value, dict):
                value = [k for k, on in value.items() if on]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise InvalidArgument(f"filter {key!r}: expected a list of strings")
            out[key] = list(value)
        for pattern in out.get("name", ()):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InvalidArgument(f"filter name={pattern!r}: {exc}") from None
        return cls(out)

    def to_json(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.values.items()}

    def __bool__(self) -> bool:
        return any(self.values.values())

    def matches(self, name: str, driver: str, state: str, labels: Mapping[str, str], swarm: str = "") -> bool:
        """``state`` as displayed (``Running``); ``labels`` the engine labels; ``swarm`` the
        master of the swarm the machine is in ("" for none)."""
        v = self.values
        if v.get("swarm") and swarm not in v["swarm"]:
            return False
        if v.get("driver") and not any(d.lower() == driver.lower() for d in v["driver"]):
            return False
        if v.get("state") and not any(s.lower() == state.lower() for s in v["state"]):
            return False
        if v.get("name") and not any(re.search(p, name) for p in v["name"]):
            return False
        if v.get("label"):
            def one(wanted: str) -> bool:
                key, _, value = wanted.partition("=")
                return key in labels and labels[key].lower() == value.lower()

            if not any(one(w) for w in v["label"]):
                return False
        return True


def first_line(reason: str) -> str:
    """A reason in one line (``ls``'s ERRORS column, an event attribute): its first line, less a
    last clause that only introduces the lines after it (``...; its log ends:``)."""
    lines = reason.strip().splitlines()
    if not lines:
        return ""
    line = lines[0].strip()
    if len(lines) > 1 and line.endswith(":"):
        head, sep, _tail = line.rpartition("; ")
        line = head if sep else line.rstrip(":")
    return line


def natural_key(name: str) -> list[Any]:
    """Docker Machine sorts names with ``naturalsort`` on their lower-case form: runs of digits
    compare as numbers (``h2`` before ``h10``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name.lower())]


def go_duration(seconds: float) -> str:
    """Go's ``time.Duration.String()`` for the response times ``ls --format '{{.ResponseTime}}'``
    shows (``0s``, ``12ms``, ``1.5s``)."""
    ns = int(round(seconds * 1e9))
    if ns == 0:
        return "0s"
    if ns < 1000:
        return f"{ns}ns"
    if ns < 1_000_000:
        return f"{_trim(ns / 1e3)}µs"
    if ns < 1_000_000_000:
        return f"{_trim(ns / 1e6)}ms"
    total = ns / 1e9
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    out = f"{_trim(secs)}s"
    if minutes or hours:
        out = f"{int(minutes)}m{out}"
    if hours:
        out = f"{int(hours)}h{out}"
    return out


def _trim(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")


__all__ = ["DISPLAY", "FILTER_KEYS", "Filters", "display_state", "first_line", "go_duration", "natural_key"]
