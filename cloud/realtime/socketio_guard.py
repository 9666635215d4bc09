"""The Socket.IO endpoint's own limits, before python-socketio and python-engineio see a request.

- An engine.io session holds memory from its handshake, long before the Socket.IO CONNECT that
  makes it a viewer: a handshake is refused (503, Retry-After) once viewers and sessions not yet
  viewers fill ``realtime.max_connections``.
- A long-polling POST must declare its length (411) and stay within
  ``realtime.max_polling_body_bytes`` (413). python-engineio refuses a longer one by closing the
  session and waiting for its queue to drain, which an unpolled session never does: the POST was
  never answered.
- Viewers only listen: a packet other than CONNECT or DISCONNECT, or one that does not decode, is
  counted and dropped (python-socketio would log a traceback for each undecodable one), and
  ``realtime.max_bad_packets`` of them close the session.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
from socketio import packet
from starlette.types import ASGIApp, Receive, Scope, Send

from cloud.api.settings import RealtimeSettings
from cloud.client_errors import ClientErrors
from cloud.compat.socketio import AsyncServer

_TRY_AGAIN_LATER = 1013
_LISTENER_PACKETS = frozenset({packet.CONNECT, packet.DISCONNECT})


def _packet_problem(data: Any) -> str | None:
    """Why a viewer's Socket.IO packet is refused, or None for a CONNECT or DISCONNECT."""
    if not isinstance(data, str):
        return "binary packet from a viewer"
    try:
        decoded = packet.Packet(encoded_packet=data)
    except Exception as exc:  # python-socketio's decoder raises whatever the junk trips
        return f"undecodable Socket.IO packet ({type(exc).__name__})"
    if decoded.packet_type not in _LISTENER_PACKETS:
        return f"unexpected {packet.packet_names[decoded.packet_type]} packet from a viewer"
    return None


class ListenerServer(AsyncServer):
    """python-socketio's server, for clients that only listen."""

    def __init__(self, *, errors: ClientErrors, max_bad_packets: int, **options: Any) -> None:
        super().__init__(**options)
        self._errors = errors
        self._max_bad_packets = max_bad_packets
        self._bad_packets: dict[str, int] = {}

    async def engineio_message(self, eio_sid: str, data: Any) -> None:
        if not self.has_session(eio_sid):
            return  # a session closed here: what it had in flight is dropped
        problem = _packet_problem(data)
        if problem is None:
            await super().engineio_message(eio_sid, data)
            return
        self._errors.note("socketio_bad_packet", problem)
        strikes = self._bad_packets.get(eio_sid, 0) + 1
        self._bad_packets[eio_sid] = strikes
        if strikes == self._max_bad_packets:
            self._errors.note("socketio_closed", f"{strikes} bad packets: session closed")
            await self.end_session_now(eio_sid)

    async def engineio_disconnect(self, eio_sid: str, reason: Any) -> None:
        self._bad_packets.pop(eio_sid, None)
        await super().engineio_disconnect(eio_sid, reason)


class SocketIoGate:
    """ASGI in front of python-socketio's app: refuses what the libraries would mishandle."""

    def __init__(
        self,
        app: ASGIApp,
        settings: RealtimeSettings,
        errors: ClientErrors,
        *,
        full: Callable[[], bool],
        retry_after_s: int,
    ) -> None:
        self._app = app
        self._settings = settings
        self._errors = errors
        self._full = full
        self._retry_after = str(retry_after_s).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refusal = self._refusal(scope)
            if refusal is not None:
                await self._refuse(scope, send, *refusal)
                return
        await self._app(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "sid" not in query and self._full():
            limit = self._settings.max_connections
            return 503, "viewers_full", f"this server holds its limit of {limit} viewers and sessions"
        if scope["type"] == "http" and scope["method"] == "POST":
            declared = dict(scope["headers"]).get(b"content-length")
            limit = self._settings.max_polling_body_bytes
            if declared is None:
                return 411, "length_required", "a polling POST must send Content-Length"
            if not declared.isdigit() or int(declared) > limit:
                return 413, "too_large", f"polling body larger than {limit} bytes"
        return None

    async def _refuse(self, scope: Scope, send: Send, status: int, kind: str, detail: str) -> None:
        self._errors.note(kind, detail)
        if scope["type"] == "websocket":
            # Accepted first: a browser sees the close code and reason, never a handshake's status.
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": _TRY_AGAIN_LATER, "reason": detail[:120]})
            return
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        if status == 503:
            headers.append((b"retry-after", self._retry_after))
        body = orjson.dumps({"error": kind, "detail": detail})
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
