"""Which browser origins may open a viewer connection (settings: realtime.allowed_origins)."""

from __future__ import annotations

from collections.abc import Mapping

# The origin's scheme a WebSocket's own scheme goes with (a page from https:// opens wss://).
_PAGE_SCHEME = {"ws": "http", "wss": "https", "http": "http", "https": "https"}


def origin_allowed(headers: Mapping[str, str], allowed: list[str], scheme: str) -> bool:
    """No Origin header (not a browser): allowed. Else "*", a listed origin, or the same origin:
    the same host and scheme (``scheme``: the connection's, wss behind a TLS proxy we trust)."""
    origin = headers.get("origin")
    if origin is None or "*" in allowed or origin in allowed:
        return True
    host = headers.get("host")
    return not allowed and host is not None and origin == f"{_PAGE_SCHEME.get(scheme, scheme)}://{host}"


def socketio_cors(allowed: list[str]) -> str | list[str] | None:
    """The same rule in python-socketio's terms (None there means same origin only)."""
    if not allowed:
        return None
    if "*" in allowed:
        return "*"
    return list(allowed)
