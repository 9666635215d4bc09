"""uvicorn's httptools protocol with the limits a public edge needs (settings: ``http``).

uvicorn bounds neither the time a client takes to send its request head or body nor the size of
the head (its httptools parser buffers a header of any size), and its ``limit_concurrency`` answers
503 only once a connection has sent a request, with no Retry-After and no exception for health
checks. This protocol adds, per connection:

- a head deadline (``header_timeout_s``) from the connection's first byte or its request's first
  byte, and a body deadline (``body_timeout_s``) from the end of the head: past either, 408 and
  close, however slowly the bytes trickle in;
- a head size bound (``max_header_bytes``): 431 and close, counted while the head is still arriving,
  so an endless header is refused at the bound instead of being buffered;
- a connection cap: past ``max_connections`` a connection is read only to let /healthz and
  /readyz answer (anything else gets 503 and Retry-After, and the connection is closed). At most
  ``reserve_connections`` such connections wait for their request head; a newer one closes the
  oldest waiting (503), so idle connections cannot keep a health check out for long.

Every refusal goes through ``ClientErrors`` (counted, logged at a bounded rate). The limits come
from the app's lifespan state (``GUARD_STATE_KEY``), which uvicorn hands every connection; without
it (an app that does not set it) the protocol is uvicorn's own.
"""

from __future__ import annotations

import asyncio
import resource
from dataclasses import dataclass, field
from typing import Any

import httptools
import orjson
import structlog

from cloud.api.settings import HttpSettings
from cloud.client_errors import ClientErrors
from cloud.compat.uvicorn import STATUS_LINE, Config, HttpProtocol, ServerState

log = structlog.get_logger(__name__)

GUARD_STATE_KEY = "giftwheel_edge_guard"
# Answered even past the connection cap: an orchestrator must tell "busy" from "dead".
HEALTH_PATHS = frozenset({b"/healthz", b"/readyz"})
# Descriptors a process holds besides client connections and Redis: the listening socket, the
# event loop's own, log files, the files imported modules keep open.
_OWN_FILES = 64


@dataclass(frozen=True, slots=True)
class EdgeGuard:
    settings: HttpSettings
    errors: ClientErrors
    # settings.max_connections, or less where the open-file limit cannot hold it.
    max_connections: int
    # Connections past the cap still waiting for their request head, oldest first.
    over_cap: dict[GuardedHttpToolsProtocol, None] = field(default_factory=dict)


def fit_open_files(settings: HttpSettings, redis_connections: int) -> int:
    """The connection cap this process can hold: raise the soft RLIMIT_NOFILE towards what the cap
    needs (up to the hard limit); where even that is short, lower the cap and say so."""
    needed = settings.max_connections + settings.reserve_connections + redis_connections + _OWN_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        raised = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        soft = raised
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return settings.max_connections
    fitted = max(1, soft - settings.reserve_connections - redis_connections - _OWN_FILES)
    log.warning(
        "connection cap lowered to fit the open-file limit",
        max_connections=settings.max_connections,
        fitted=fitted,
        rlimit_nofile=soft,
    )
    return fitted


class _Refusal(Exception):
    """Raised in a parser callback to stop parsing; data_received answers it."""

    def __init__(
        self, status: int, kind: str, detail: str, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.kind = kind
        self.detail = detail
        self.headers = headers


class GuardedHttpToolsProtocol(HttpProtocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._guard: EdgeGuard | None = app_state.get(GUARD_STATE_KEY)
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None
        self._reading_head = True
        self._head_bytes = 0
        self._over_cap = False
        self._lingering: asyncio.TimerHandle | None = None

    # Connection

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        guard = self._guard
        if guard is None:
            return
        if len(self.connections) > guard.max_connections:
            self._over_cap = True
            if len(guard.over_cap) >= guard.settings.reserve_connections:
                oldest = next(iter(guard.over_cap))
                oldest._refuse(oldest._busy(guard))
            guard.over_cap[self] = None
        self._arm_head_timer(guard)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        if self._lingering is not None:
            self._lingering.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        guard = self._guard
        if guard is None:
            super().data_received(data)
            return
        if self._lingering is not None:
            return  # refused: what the client still sends is dropped
        self.unset_keepalive()
        if self._reading_head:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self.upgrade_to_websocket():
                self.handle_websocket_upgrade()
            else:
                self.unsupported_upgrade()
            return
        except httptools.HttpParserError as exc:
            refusal = exc.__context__
            if not isinstance(refusal, _Refusal):
                refusal = _Refusal(400, "bad_request", f"invalid HTTP request: {exc}")
            self._refuse(refusal)
            return
        if self._reading_head and self._head_bytes > guard.settings.max_header_bytes:
            self._refuse(self._head_too_large(guard))

    def handle_websocket_upgrade(self) -> None:
        self._cancel_timers()  # the WebSocket protocol takes over the transport, with its own pings
        super().handle_websocket_upgrade()

    def unsupported_upgrade(self) -> None:
        if self._guard is None:
            super().unsupported_upgrade()
        else:
            self._guard.errors.note("unsupported_upgrade", "upgrade to a protocol other than websocket")

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._guard is not None and self._head_timer is None:
            self._arm_head_timer(self._guard)

    def on_headers_complete(self) -> None:
        guard = self._guard
        if guard is None:
            super().on_headers_complete()
            return
        self._reading_head = False
        self._head_bytes = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        guard.over_cap.pop(self, None)
        head_size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if head_size > guard.settings.max_header_bytes:
            raise self._head_too_large(guard)
        if self._over_cap and httptools.parse_url(self.url).path not in HEALTH_PATHS:
            raise self._busy(guard)
        super().on_headers_complete()
        if self._over_cap:
            self.close_after_response()  # a health check's connection, closed once answered
        if not self.parser.should_upgrade():
            self._body_timer = self.loop.call_later(guard.settings.body_timeout_s, self._body_timed_out)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._reading_head = True
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    # Refusals

    def _arm_head_timer(self, guard: EdgeGuard) -> None:
        self._head_timer = self.loop.call_later(guard.settings.header_timeout_s, self._head_timed_out)

    def _cancel_timers(self) -> None:
        if self._guard is not None:
            self._guard.over_cap.pop(self, None)
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _head_timed_out(self) -> None:
        assert self._guard is not None
        timeout = self._guard.settings.header_timeout_s
        self._refuse(
            _Refusal(408, "header_timeout", f"request line and headers not received within {timeout} s")
        )

    def _body_timed_out(self) -> None:
        assert self._guard is not None
        timeout = self._guard.settings.body_timeout_s
        self._refuse(_Refusal(408, "body_timeout", f"request body not received within {timeout} s"))

    @staticmethod
    def _head_too_large(guard: EdgeGuard) -> _Refusal:
        limit = guard.settings.max_header_bytes
        return _Refusal(431, "headers_too_large", f"request line and headers larger than {limit} bytes")

    @staticmethod
    def _busy(guard: EdgeGuard) -> _Refusal:
        retry_after = str(guard.settings.busy_retry_after_s).encode()
        return _Refusal(
            503,
            "connections_full",
            f"this server holds its limit of {guard.max_connections} connections",
            ((b"retry-after", retry_after),),
        )

    def _refuse(self, refusal: _Refusal) -> None:
        """Answer with the project's error shape and close; the app under way sees a disconnect."""
        self._cancel_timers()
        assert self._guard is not None
        self._guard.errors.note(refusal.kind, refusal.detail, client=self.client[0] if self.client else None)
        if self.transport.is_closing():
            return
        if self.abort_request():  # too late to answer: the status line is out
            self.transport.close()
            return
        body = orjson.dumps({"error": refusal.kind, "detail": refusal.detail})
        head = [STATUS_LINE[refusal.status]]
        for name, value in refusal.headers:
            head += [name, b": ", value, b"\r\n"]
        head += [
            b"content-type: application/json\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            b"connection: close\r\n\r\n",
        ]
        self.transport.write(b"".join(head) + body)
        if self._over_cap or not self.transport.can_write_eof():
            self.transport.close()  # past the cap a descriptor is worth more than the answer
            return
        # Closed with unread data, the socket would reset the connection and a client still
        # uploading could lose the answer: half-close, drop what still comes (the client's FIN
        # closes the transport), and close for good after refusal_linger_s.
        self.transport.write_eof()
        self.flow.resume_reading()
        self._lingering = self.loop.call_later(self._guard.settings.refusal_linger_s, self.transport.close)
