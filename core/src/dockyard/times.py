"""Time values as Docker's API writes them: RFC 3339 with nanoseconds, unix seconds, and the
``until``/``since`` filters' durations."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from dockyard.errors import InvalidArgument


def _parse_time(text: str) -> datetime | None:
    if not text:
        return None
    t = text.replace("Z", "+00:00")
    # Python accepts at most 6 fractional digits.
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)(\.\d+)?(.*)$", t)
    if m:
        t = m.group(1) + (m.group(2)[:7] if m.group(2) else "") + m.group(3)
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def unix_time(text: str) -> int:
    """Unix seconds of an RFC 3339 time (0 when empty or unreadable)."""
    dt = _parse_time(text)
    return int(dt.timestamp()) if dt else 0


def parse_until(value: str, now: float | None = None) -> float:
    """Docker's ``until`` prune filter: unix seconds (``.frac``), RFC 3339, or a Go duration
    (``24h``, ``10m``, ``1h30m``) meaning that long ago."""
    now = time.time() if now is None else now
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    m = re.fullmatch(r"((?:\d+(?:\.\d+)?(?:h|m|s|ms|us|ns))+)", text)
    if m:
        scale = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}
        total = sum(float(n) * scale[u] for n, u in re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|ns|m|s)", text))
        return now - total
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise InvalidArgument(f"invalid filter 'until={value}': not a timestamp or duration") from None
