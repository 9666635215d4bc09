"""uvicorn's protocol classes, which the API subclasses, and the internals those subclasses use.

Checked against uvicorn 0.55.0 with websockets 17.4 (:data:`CHECKED`; pyproject allows exactly these
ranges, tests/compat/test_uvicorn.py fails on anything else or on a moved internal). uvicorn
documents neither class as API. What the subclasses rely on:

- :class:`HttpProtocol` (``cloud/api/guarded_http.py``): ``HttpToolsProtocol.data_received`` is
  re-implemented whole, so its steps (``_unset_keepalive_if_required``, ``parser.feed_data``, the
  upgrade decision ``_should_upgrade``, ``_unsupported_upgrade_warning``) must stay what it does; a
  step added upstream would be skipped. Also read: ``connections`` (the server's set), ``parser``,
  ``url`` and ``headers`` (the head so far), ``cycle`` (``response_started``,
  ``response_complete``, ``keep_alive``, ``disconnected``, ``message_event``), ``flow``,
  ``transport``, ``loop``, ``client``; and ``STATUS_LINE``. A rename fails at the first request
  (AttributeError), answered by uvicorn's 500, never silently.
- :class:`WebSocketProtocol` (``cloud/realtime/direct_frames.py``): ``handle_connect`` builds the
  scope and schedules the app without running it, so an extension added right after is in the
  scope the app reads; ``response`` and ``conn`` (websockets' ServerProtocol) tell the handshake's
  outcome; ``handshake_complete``, ``close_sent``, ``disconnected`` and ``writable`` say whether a
  frame may be written straight to ``transport``.
"""

from __future__ import annotations

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn.server import ServerState
from websockets.http11 import Request

__all__ = ["CHECKED", "STATUS_LINE", "Config", "HttpProtocol", "Request", "ServerState", "WebSocketProtocol"]

# Distribution: the versions this module's assumptions were checked against.
CHECKED = {"uvicorn": ">=0.55,<0.56", "websockets": ">=17,<18"}


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the private steps of its ``data_received`` and what
    aborting a request takes under names of ours, for a subclass that re-implements them."""

    def unset_keepalive(self) -> None:
        """Data arrived: the keep-alive timeout of an idle connection no longer applies."""
        self._unset_keepalive_if_required()

    def upgrade_to_websocket(self) -> bool:
        """The request asks to upgrade to a WebSocket and this server can."""
        return self._should_upgrade()

    def _unsupported_upgrade_warning(self) -> None:
        self.unsupported_upgrade()

    def unsupported_upgrade(self) -> None:
        """An upgrade to anything else was asked for: uvicorn logs it (override to do otherwise)."""
        super()._unsupported_upgrade_warning()

    def abort_request(self) -> bool:
        """The app's request under way, if any, sees the client gone; returns whether its
        response has started (too late to answer in its place)."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            return False
        cycle.disconnected = True
        cycle.message_event.set()
        return cycle.response_started

    def close_after_response(self) -> None:
        """The request under way is the connection's last."""
        self.cycle.keep_alive = False


class WebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, with the connection state a direct writer needs."""

    def accepted_without_extensions(self) -> bool:
        """After ``handle_connect``: the handshake succeeded and agreed no extension."""
        return self.response.status_code == 101 and not self.conn.extensions

    def offer_extension(self, name: str, value: dict[object, object]) -> None:
        """Add an ASGI extension to the scope; the app sees it (``handle_connect`` has returned)."""
        self.scope["extensions"][name] = value

    def can_write_now(self) -> bool:
        """Open, not closing and below the transport's high-water mark."""
        return (
            self.handshake_complete
            and not self.close_sent
            and not self.disconnected
            and self.writable.is_set()
            and not self.transport.is_closing()
        )
