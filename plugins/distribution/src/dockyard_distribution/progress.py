"""Docker's JSON-message progress lines (``jsonmessage.JSONProgress`` as dockerd renders it)."""

from __future__ import annotations

from typing import Any

from dockyard.client.units import human_size  # go-units HumanSize: 19.97kB, 1.984MB


def progress_bar(current: int, total: int) -> str:
    """The ``progress`` text dockerd sends (it renders for a 200-column terminal)."""
    if current <= 0 and total <= 0:
        return ""
    if total <= 0:
        return f"{human_size(current):>8}"
    pct = min(50, int(current / total * 100) // 2)
    bar = "[" + "=" * pct + ">" + " " * (50 - pct) + "] "
    numbers = f"{human_size(current):>8}/{human_size(total)}" if current <= total else f"{human_size(current):>8}"
    return bar + numbers


def status(text: str, id_: str | None = None, detail: bool = True) -> dict[str, Any]:
    msg: dict[str, Any] = {"status": text}
    if detail and id_ is not None:
        msg["progressDetail"] = {}
    if id_ is not None:
        msg["id"] = id_
    return msg


def progress(text: str, id_: str, current: int, total: int) -> dict[str, Any]:
    detail: dict[str, Any] = {"current": current}
    if total > 0:
        detail["total"] = total
    return {"status": text, "progressDetail": detail, "progress": progress_bar(current, total), "id": id_}


def error(message: str) -> dict[str, Any]:
    return {"errorDetail": {"message": message}, "error": message}


def short_id(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]
