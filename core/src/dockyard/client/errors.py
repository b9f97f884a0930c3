"""The client's errors: the daemon could not be reached, TLS failed, or the daemon answered an
error status (mapped back to the typed error the API front mapped it from)."""

from __future__ import annotations

import json

from dockyard import errors as e

#: HTTP status -> the typed error the API front maps to it (the inverse of its mapping).
BY_STATUS: dict[int, type[e.DockyardError]] = {
    304: e.NotModified, 400: e.InvalidArgument, 403: e.Forbidden, 404: e.NotFound,
    409: e.Conflict, 501: e.Unavailable, 503: e.Unavailable,
}


class ConnectionFailed(e.Unavailable):
    """The daemon could not be reached."""


class TlsFailed(ConnectionFailed):
    """The TLS handshake with the daemon failed, or the TLS files could not be used."""


def api_error(status: int, raw: bytes, what: str) -> e.DockyardError:
    """The typed error for an error answer; the message is the body's ``message`` (Docker's
    ``{"message": ...}``), else the body's text, else ``HTTP <status> from <what>``."""
    message = ""
    if raw:
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            message = str(doc.get("message") or "")
        else:
            message = raw.decode(errors="replace").strip()
    return BY_STATUS.get(status, e.DockyardError)(message or f"HTTP {status} from {what}")
