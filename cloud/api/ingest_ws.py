"""GET /v1/ingest: a WebSocket for high-rate sources; every event is acked once it is stored.

Frames in: one event object, or an array of up to ``max_batch_events`` of them. Answers mirror
the frame (an object for an object, an array in the same order for an array), each ack
``{"seq", "eventId", "duplicate"}`` or ``{"seq", "error", "detail", "retryAfter"?}``, sent once
the events are stored. ``seq`` counts events on this connection from 0, so a sender can match
every answer, even for an event too broken to have an id. A sender that stops reading its acks is
read no further once ``max_ws_pending_ack_bytes`` of them wait (it blocks sending, as TCP does).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from cloud.api.auth import AuthError
from cloud.api.problems import problems_detail, queue_refusal
from cloud.api.state import Services, services
from cloud.ingest.queue import Appended
from cloud.ingest.service import Outcome
from giftwheel.contracts import GiftRejected, strict_json

router = APIRouter()
log = structlog.get_logger(__name__)

_POLICY_VIOLATION = 1008
_MESSAGE_TOO_BIG = 1009


class _Session:
    def __init__(self, websocket: WebSocket, svc: Services) -> None:
        self._ws = websocket
        self._svc = svc
        self._seq = 0
        self._outbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._slots = asyncio.Semaphore(svc.settings.ingest.max_ws_inflight_frames)
        # Acks not yet taken by the socket. A client that stops reading them is read no further
        # until it catches up: its frames wait in its own socket, not as acks in this process.
        self._pending_ack_bytes = 0
        self._max_pending_ack_bytes = svc.settings.ingest.max_ws_pending_ack_bytes
        self._acks_taken = asyncio.Event()
        self._acks_taken.set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        writer = asyncio.create_task(self._write())
        try:
            await self._read()
        except WebSocketDisconnect:
            pass
        finally:
            # Writes under way still complete (the events may be stored); their acks go nowhere
            # if the peer left, and it will resend: ingest dedupes.
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            self._outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await writer

    async def _read(self) -> None:
        limit = self._svc.settings.ingest.max_ws_frame_bytes
        while True:
            await self._acks_taken.wait()
            message = await self._ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            frame: str | bytes = message.get("text") or message.get("bytes") or b""
            if len(frame) > limit:
                self._svc.ingest.count_rejected("websocket", "too_large")
                await self._ws.close(_MESSAGE_TOO_BIG, f"frame larger than {limit} bytes")
                return
            await self._slots.acquire()
            task = asyncio.create_task(self._handle(frame, time.perf_counter()))
            self._tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._slots.release()

    def _items(self, frame: str | bytes) -> tuple[list[Any], bool, Any]:
        """The events of a frame, whether it was an array, and a frame-wide error if any."""
        try:
            document = strict_json.loads(frame)
        except strict_json.DuplicateKeyError as exc:
            return [None], False, [{"field": exc.key, "reason": exc.reason}]
        except ValueError as exc:
            return [None], False, f"malformed JSON: {exc}"
        if not isinstance(document, list):
            return [document], False, None
        limit = self._svc.settings.ingest.max_batch_events
        if len(document) > limit:
            return document, True, f"frame of {len(document)} events exceeds {limit}"
        return document, True, None

    async def _handle(self, frame: str | bytes, started: float) -> None:
        ingest = self._svc.ingest
        items, is_array, frame_error = self._items(frame)
        first_seq = self._seq
        self._seq += len(items)
        if frame_error is not None:
            ingest.count_rejected("websocket", "invalid", len(items))
            acks = [
                {"seq": first_seq + offset, "error": "rejected", "detail": frame_error}
                for offset in range(len(items))
            ]
        else:
            ingested = await ingest.ingest_items("websocket", items)
            acks = [
                self._ack(first_seq + offset, outcome) for offset, outcome in enumerate(ingested.outcomes)
            ]
        answer = orjson.dumps(acks if is_array else acks[0])
        self._pending_ack_bytes += len(answer)
        if self._pending_ack_bytes >= self._max_pending_ack_bytes:
            self._acks_taken.clear()
        self._outbox.put_nowait(answer)
        ingest.metrics.latency["websocket"].observe(time.perf_counter() - started)

    def _ack(self, seq: int, outcome: Outcome) -> dict[str, Any]:
        if isinstance(outcome, Appended):
            return {"seq": seq, "eventId": outcome.event_id, "duplicate": outcome.duplicate}
        if isinstance(outcome, GiftRejected):
            return {"seq": seq, "error": "rejected", "detail": problems_detail(outcome.problems)}
        reason, detail = queue_refusal(outcome)
        return {
            "seq": seq,
            "error": reason,
            "detail": detail,
            "retryAfter": self._svc.settings.ingest.retry_after_s,
        }

    async def _write(self) -> None:
        while (ack := await self._outbox.get()) is not None:
            # uvicorn's send waits while the transport is paused (its buffer above the high-water
            # mark), so an ack counts as pending until the socket has taken it.
            if self._ws.client_state is WebSocketState.CONNECTED:
                with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                    await self._ws.send_text(ack.decode())
            self._pending_ack_bytes -= len(ack)
            if self._pending_ack_bytes < self._max_pending_ack_bytes:
                self._acks_taken.set()


@router.websocket("/v1/ingest")
async def ingest_socket(websocket: WebSocket) -> None:
    svc = services(websocket)
    try:
        svc.auth.check_bearer(websocket.headers.get("authorization"))
    except AuthError as exc:
        svc.ingest.count_rejected("websocket", "unauthorized")
        log.info("websocket refused", reason=str(exc), client=str(websocket.client))
        await websocket.close(_POLICY_VIOLATION, str(exc))
        return
    await websocket.accept()
    await _Session(websocket, svc).run()
