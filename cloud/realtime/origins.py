"""Which browser origins may open a viewer connection (settings: realtime.allowed_origins)."""

from __future__ import annotations

from collections.abc import Mapping


def origin_allowed(headers: Mapping[str, str], allowed: list[str]) -> bool:
    """No Origin header (not a browser): allowed. Else "*", a listed origin, or the same host."""
    origin = headers.get("origin")
    if origin is None or "*" in allowed or origin in allowed:
        return True
    host = headers.get("host")
    return not allowed and host is not None and origin.partition("://")[2] == host


def socketio_cors(allowed: list[str]) -> str | list[str] | None:
    """The same rule in python-socketio's terms (None there means same origin only)."""
    if not allowed:
        return None
    if "*" in allowed:
        return "*"
    return list(allowed)
