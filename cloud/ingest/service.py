"""IngestService: parse, check the backlog, append through the write grouper, count. No framework."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog

from cloud.ingest.errors import BacklogFull, QueueUnavailable
from cloud.ingest.grouping import WriteGrouper
from cloud.ingest.metrics import IngestMetrics
from cloud.ingest.queue import Appended, GiftQueue
from cloud.settings import CloudSettings
from giftwheel.contracts import GiftEvent, GiftRejected, parse_gift, parse_gift_item

log = structlog.get_logger(__name__)


class IngestService:
    def __init__(
        self,
        settings: CloudSettings,
        queue: GiftQueue,
        metrics: IngestMetrics,
        *,
        clock: Callable[[], float],
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

    def parse(self, raw: bytes | str) -> GiftEvent:
        """One event's JSON text. Raises GiftRejected with every problem found."""
        return parse_gift(raw, self._settings.bounds, int(self._clock() * 1000))

    def parse_item(self, item: object) -> GiftEvent:
        """One decoded item of a batch or frame. Raises GiftRejected with every problem found."""
        return parse_gift_item(item, self._settings.bounds, int(self._clock() * 1000))

    def check_backlog(self) -> None:
        if self.backlog > self._settings.ingest.backlog_max:
            raise BacklogFull(
                f"{self.backlog} unprocessed events exceed the bound of "
                f"{self._settings.ingest.backlog_max}; retry later"
            )

    async def submit(self, event: GiftEvent) -> Appended:
        self.check_backlog()
        appended = await self._grouper.append(event)
        self._announce([event], [appended])
        return appended

    async def submit_all(self, events: list[GiftEvent]) -> list[Appended]:
        self.check_backlog()
        appended = await self._grouper.append_all(events)
        self._announce(events, appended)
        return appended

    def _announce(self, events: list[GiftEvent], results: list[Appended]) -> None:
        if self._on_accepted is not None:
            self._on_accepted([e for e, r in zip(events, results, strict=True) if not r.duplicate])

    def count(self, endpoint: str, results: list[Appended]) -> None:
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
