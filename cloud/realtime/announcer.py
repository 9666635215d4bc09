"""Gifts accepted by ingest, announced to viewers: called on the ingest path, published behind it.

``announce`` never waits and never fails the ingest call that made it (the event is stored by
then); a background task remembers the gifts for late joiners and publishes them, at most
``max_per_s`` a second so a flood of gifts costs ingest nothing but a deque append. Under a flood
the oldest waiting announcements are dropped and counted: viewers see recent gifts; the queue and
the motors lose nothing.

What waits is published together, at most once per ``interval_s``: one message, which a
plain-WebSocket viewer gets as one frame (the gifts of its channel). Every announcement reaches
every viewer and is never dropped there, so the fan-out's cost is per message, not per gift: a
gift after a quiet spell goes out at once, and a flood costs viewers a few frames a second
however many gifts it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque

import structlog
from redis.exceptions import RedisError

from cloud.realtime.events import PublishBatch, ViewerEvent, gift_payload, gift_rooms
from cloud.realtime.live_state import LiveState
from giftwheel.contracts import GiftEvent

log = structlog.get_logger(__name__)


class GiftAnnouncer:
    def __init__(
        self,
        live: LiveState,
        publish: PublishBatch,
        *,
        max_pending: int,
        max_per_s: int,
        interval_s: float,
    ) -> None:
        self._live = live
        self._publish = publish
        self._pending: deque[GiftEvent] = deque(maxlen=max_pending)
        self._max_pending = max_pending
        self._max_per_s = max_per_s
        self._interval_s = interval_s
        # The rate cap spread over the intervals, so a flood arrives as a steady trickle of flushes.
        self._per_flush = max(1, math.ceil(max_per_s * interval_s)) if interval_s > 0 else max_per_s
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # redis-py may swallow a cancellation that lands mid-command, so the loop also checks this.
        self._stopping = False
        self.dropped = 0

    def announce(self, events: list[GiftEvent]) -> None:
        if not events:
            return
        self.dropped += max(0, len(self._pending) + len(events) - self._max_pending)
        self._pending.extend(events)
        self._ready.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stopping = True
        self._ready.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._pending:
            try:
                await self._flush()  # what ingest accepted before shutdown still gets announced
            except (RedisError, OSError) as exc:
                log.warning("gift announcements lost at shutdown", count=len(self._pending), error=str(exc))

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            if self._stopping:
                return
            self._ready.clear()
            started = time.monotonic()
            try:
                sent = await self._flush()
            except (RedisError, OSError) as exc:
                log.warning("gift announcements delayed: redis unavailable", error=str(exc))
                await asyncio.sleep(0.5)
                self._ready.set()
            else:
                pause = max(self._interval_s, sent / self._max_per_s)
                await asyncio.sleep(max(0.0, pause - (time.monotonic() - started)))

    async def _flush(self) -> int:
        batch = [self._pending.popleft() for _ in range(min(len(self._pending), self._per_flush))]
        if self._pending:
            self._ready.set()
        gifts = [gift_payload(event) for event in batch]
        published = False
        try:
            await self._live.remember_gifts(gifts)
            await self._publish([(ViewerEvent.GIFT_ACCEPTED.value, g, gift_rooms(g)) for g in gifts])
            published = True
        finally:
            if not published:  # retried first
                self._pending.extendleft(reversed(batch))
        return len(batch)
