"""IngestClient: hands counted gifts to the ingest API's WebSocket and keeps each until it is acked.

Protocol (cloud/api/ingest_ws.py): text frames of one event or an array of events; the server
answers every event with ``{"seq", "eventId", "duplicate"}`` once it is stored, or ``{"seq",
"error": "rejected"|"unavailable"|"backlog", "detail", "retryAfter"?}``, one answer per frame or
an array of answers for an array frame. ``seq`` numbers the
events of one connection from 0. Every event carries its eventId, so resending after a reconnect
is safe: the API dedupes. A rejected event is a bug in the adapter: logged and counted, never
retried. The buffer of unacked events is bounded; a full buffer refuses new gifts loudly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from typing import Any

import orjson
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus, WebSocketException

from cloud.sources.backoff import Backoff
from cloud.sources.metrics import SourceMetrics
from cloud.sources.settings import SourceSettings
from giftwheel.contracts import GiftEvent

log = structlog.get_logger(__name__)

_RETRYABLE = ("unavailable", "backlog")


class IngestBufferFull(RuntimeError):
    """More unacked events than ``ingest_client.buffer_max_events``: the gift was not taken."""


class _ProtocolError(RuntimeError):
    """The server answered something the protocol does not allow: reconnect and resend."""


class IngestClient:
    def __init__(self, settings: SourceSettings, metrics: SourceMetrics) -> None:
        self._settings = settings
        self._limits = settings.ingest_client
        self._metrics = metrics
        self._pending: OrderedDict[str, GiftEvent] = OrderedDict()
        self._unsent: deque[str] = deque()
        self._inflight: dict[int, str] = {}
        self._seq = 0
        self._resume_at = 0.0
        self._changed = asyncio.Event()
        self._empty = asyncio.Event()
        self._empty.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def submit(self, event: GiftEvent) -> None:
        """Take an event; it is held until the API acks it. Raises IngestBufferFull."""
        if event.event_id in self._pending:
            return
        if len(self._pending) >= self._limits.buffer_max_events:
            self._metrics.buffer_full.inc()
            raise IngestBufferFull(
                f"{len(self._pending)} events await the ingest API "
                f"(ingest_client.buffer_max_events); gift {event.event_id} not taken"
            )
        self._pending[event.event_id] = event
        self._unsent.append(event.event_id)
        self._metrics.buffer_events.set(len(self._pending))
        self._empty.clear()
        self._changed.set()

    async def drain(self, timeout_s: float) -> bool:
        """Wait until every submitted event is acked; False if the timeout came first."""
        try:
            await asyncio.wait_for(self._empty.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def run(self) -> None:
        """Stay connected, resending what is unacked after every reconnect, until cancelled."""
        backoff = Backoff(self._limits.backoff)
        headers = {}
        if self._settings.api_key is not None:
            headers["Authorization"] = f"Bearer {self._settings.api_key.get_secret_value()}"
        url = self._settings.ingest_ws_url
        while True:
            try:
                async with connect(
                    url,
                    additional_headers=headers,
                    open_timeout=self._limits.connect_timeout_s,
                    max_size=None,
                ) as ws:
                    log.info("ingest connected", url=url, pending=len(self._pending))
                    self._metrics.ingest_connected.set(1)
                    backoff.reset()
                    await self._session(ws)
            except InvalidStatus as exc:
                log.error("ingest refused the connection", url=url, status=exc.response.status_code)
            except (OSError, TimeoutError, WebSocketException, _ProtocolError) as exc:
                log.warning("ingest connection lost", url=url, error=str(exc) or type(exc).__name__)
            finally:
                self._metrics.ingest_connected.set(0)
            self._metrics.ingest_reconnects.inc()
            await asyncio.sleep(backoff.next_delay_s())

    async def _session(self, ws: ClientConnection) -> None:
        # A new connection numbers from 0 and knows nothing: everything unacked goes again.
        self._seq = 0
        self._inflight.clear()
        self._unsent = deque(self._pending)
        sender = asyncio.create_task(self._send_loop(ws))
        try:
            await self._receive_loop(ws)
        finally:
            sender.cancel()
            # A send that failed raises here; a cancelled sender (the normal end) does not.
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def _send_loop(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._changed.clear()
            wait_s = self._resume_at - loop.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)
                continue
            room = min(self._limits.max_inflight_events - len(self._inflight), self._limits.max_frame_events)
            batch: list[GiftEvent] = []
            while self._unsent and len(batch) < room:
                event = self._pending.get(self._unsent.popleft())
                if event is not None:
                    batch.append(event)
            if not batch:
                await self._changed.wait()
                continue
            for event in batch:
                self._inflight[self._seq] = event.event_id
                self._seq += 1
            items = [event.model_dump(by_alias=True, exclude_none=True, exclude={"v"}) for event in batch]
            await ws.send(orjson.dumps(items[0] if len(items) == 1 else items).decode())

    async def _receive_loop(self, ws: ClientConnection) -> None:
        async for message in ws:
            try:
                document = orjson.loads(message)
                # One answer per frame, or an array answering an array frame in one go.
                answers = document if isinstance(document, list) else [document]
                pairs = [(answer["seq"], answer) for answer in answers]
            except (orjson.JSONDecodeError, TypeError, KeyError) as exc:
                raise _ProtocolError(f"unreadable answer {message!r:.200}") from exc
            for seq, answer in pairs:
                event_id = self._inflight.pop(seq, None)
                if event_id is None:
                    raise _ProtocolError(f"answer for seq {seq} that was not sent or was answered")
                self._answer(event_id, answer)
            self._changed.set()

    def _answer(self, event_id: str, answer: dict[str, Any]) -> None:
        error = answer.get("error")
        if error is None:
            if answer.get("eventId") != event_id:
                raise _ProtocolError(f"ack for {answer.get('eventId')!r} where {event_id!r} was sent")
            self._metrics.ingest_acked("duplicate" if answer.get("duplicate") else "accepted").inc()
            self._done(event_id)
        elif error == "rejected":
            self._metrics.ingest_rejected.inc()
            event = self._pending.get(event_id)
            log.error(
                "ingest rejected an event (adapter bug)",
                event_id=event_id,
                detail=answer.get("detail"),
                gift=event.model_dump(by_alias=True) if event else None,
            )
            self._done(event_id)
        elif error in _RETRYABLE:
            self._metrics.ingest_retries(error).inc()
            retry_after_s = float(answer.get("retryAfter") or self._limits.backoff.initial_s)
            self._resume_at = max(self._resume_at, asyncio.get_running_loop().time() + retry_after_s)
            self._unsent.appendleft(event_id)
            log.warning("ingest asked to retry", reason=error, retry_after_s=retry_after_s)
        else:
            raise _ProtocolError(f"unknown answer {answer!r:.200}")

    def _done(self, event_id: str) -> None:
        self._pending.pop(event_id, None)
        self._metrics.buffer_events.set(len(self._pending))
        if not self._pending:
            self._empty.set()
