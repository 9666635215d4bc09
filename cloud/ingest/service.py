"""IngestService: parse, check the backlog, append through the write grouper, count. No framework.

Both transports (HTTP posts, the WebSocket) make one call per request or frame and only shape the
answer: what was stored, refused and counted is decided here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

import structlog

from cloud.api.settings import ApiSettings
from cloud.ingest.errors import BacklogFull, QueueUnavailable
from cloud.ingest.grouping import WriteGrouper
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.queue import Appended, GiftQueue
from giftwheel.clock import Clock
from giftwheel.contracts import GiftEvent, GiftRejected, parse_gift, parse_gift_item

# What became of one item: stored (or found a duplicate), refused with its problems, or not taken
# by the queue (which refused all the valid items of its request or frame together).
Outcome = Appended | GiftRejected | BacklogFull | QueueUnavailable

log = structlog.get_logger(__name__)


class Ingested(NamedTuple):
    outcomes: list[Outcome]  # one per item, in order
    accepted: int  # newly stored
    duplicates: int  # stored before (a sender's retry)
    rejected: int  # refused as invalid
    refused: BacklogFull | QueueUnavailable | None  # the queue took none of the valid items


class IngestService:
    def __init__(
        self,
        settings: ApiSettings,
        queue: GiftQueue,
        metrics: IngestMetrics,
        *,
        clock: Clock,
        on_accepted: Callable[[list[GiftEvent]], None] | None = None,
    ) -> None:
        self._settings = settings
        # Told of every newly stored (not duplicate) event; must not block or raise (realtime).
        self._on_accepted = on_accepted
        self.queue = queue
        self.metrics = metrics
        self._clock = clock
        self._grouper = WriteGrouper(
            queue.append,
            max_inflight=settings.ingest.max_inflight_writes,
            max_group=settings.ingest.max_write_group,
        )
        self.backlog: int = 0
        self.backlog_known = False
        self._monitor: asyncio.Task[None] | None = None
        # redis-py may swallow a cancellation that lands mid-command, so the loop also checks this.
        self._stopping = False

    async def ingest_one(self, endpoint: str, raw: bytes | str) -> Appended:
        """One event's JSON text parsed, appended and counted. Raises GiftRejected (with every
        problem found), BacklogFull or QueueUnavailable, each counted as a rejection first."""
        try:
            event = parse_gift(raw, self._settings.bounds, self._clock.wall_ms())
        except GiftRejected:
            self.count_rejected(endpoint, "invalid")
            raise
        try:
            self._check_backlog()
            appended = await self._grouper.append(event)
        except (BacklogFull, QueueUnavailable) as exc:
            self.count_rejected(endpoint, exc.reason)
            raise
        self._announce([event], [appended])
        self._count(endpoint, [appended])
        return appended

    async def ingest_items(self, endpoint: str, items: Sequence[object]) -> Ingested:
        """The decoded items of a batch or frame: each parsed, the valid ones appended together,
        every outcome counted. A bad item does not sink the others; a queue that refuses the
        valid ones refuses them all (``Ingested.refused``)."""
        now_ms = self._clock.wall_ms()
        parsed: list[GiftEvent | GiftRejected] = []
        for item in items:
            try:
                parsed.append(parse_gift_item(item, self._settings.bounds, now_ms))
            except GiftRejected as exc:
                parsed.append(exc)
        events = [event for event in parsed if not isinstance(event, GiftRejected)]
        rejected = len(parsed) - len(events)
        if rejected:
            self.count_rejected(endpoint, "invalid", rejected)
        if not events:
            return Ingested([p for p in parsed if isinstance(p, GiftRejected)], 0, 0, rejected, None)
        try:
            self._check_backlog()
            appended = await self._grouper.append_all(events)
        except (BacklogFull, QueueUnavailable) as exc:
            self.count_rejected(endpoint, exc.reason, len(events))
            return Ingested([p if isinstance(p, GiftRejected) else exc for p in parsed], 0, 0, rejected, exc)
        self._announce(events, appended)
        self._count(endpoint, appended)
        stored = iter(appended)
        outcomes: list[Outcome] = [p if isinstance(p, GiftRejected) else next(stored) for p in parsed]
        duplicates = sum(1 for result in appended if result.duplicate)
        return Ingested(outcomes, len(appended) - duplicates, duplicates, rejected, None)

    def _check_backlog(self) -> None:
        if self.backlog > self._settings.ingest.backlog_max:
            raise BacklogFull(
                f"{self.backlog} unprocessed events exceed the bound of "
                f"{self._settings.ingest.backlog_max}; retry later"
            )

    def _announce(self, events: list[GiftEvent], results: list[Appended]) -> None:
        if self._on_accepted is not None:
            self._on_accepted([e for e, r in zip(events, results, strict=True) if not r.duplicate])

    def _count(self, endpoint: str, results: list[Appended]) -> None:
        duplicates = sum(1 for r in results if r.duplicate)
        if duplicates:
            self.metrics.duplicates[endpoint].inc(duplicates)
        if len(results) > duplicates:
            self.metrics.accepted[endpoint].inc(len(results) - duplicates)

    def count_rejected(self, endpoint: str, reason: str, amount: int = 1) -> None:
        self.metrics.rejected[(endpoint, reason)].inc(amount)

    # -- backlog monitor: polled in the background so no request pays a round trip for it --

    async def start(self) -> None:
        await self.refresh_backlog()
        self._monitor = asyncio.create_task(self._poll_backlog())

    async def stop(self) -> None:
        self._stopping = True
        if self._monitor is not None:
            self._monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._monitor
        await self._grouper.drain()

    async def refresh_backlog(self) -> None:
        try:
            self.backlog = await self.queue.backlog()
        except QueueUnavailable as exc:
            if self.backlog_known:
                log.warning("backlog unknown: redis unavailable", error=str(exc))
            self.backlog_known = False
        else:
            self.backlog_known = True
            self.metrics.backlog.set(self.backlog)

    async def _poll_backlog(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self._settings.ingest.backlog_poll_interval_s)
            await self.refresh_backlog()


__all__ = ["BacklogFull", "GiftRejected", "IngestService", "QueueUnavailable"]
