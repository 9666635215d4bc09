"""GiftPipeline: payload -> frame -> streak tracker -> bounds -> ingest client; nothing else.

Sources call ``handle`` from their event handlers and run ``sweep_forever`` beside their
connection, so a streak whose end never comes is settled even while the feed is down.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any

import structlog
from pydantic import ValidationError

from cloud.sources.frames import GiftFrame
from cloud.sources.ingest_client import IngestBufferFull, IngestClient
from cloud.sources.metrics import SourceMetrics
from cloud.sources.streaks import Counted, StreakTracker
from giftwheel.clock import Clock
from giftwheel.contracts import GiftBounds, GiftRejected, bound_violations, normalise

log = structlog.get_logger(__name__)

Adapter = Callable[..., GiftFrame]


class GiftPipeline:
    def __init__(
        self,
        *,
        tracker: StreakTracker,
        ingest: IngestClient,
        bounds: GiftBounds,
        clock: Clock,
        metrics: SourceMetrics,
        channel: str | None,
    ) -> None:
        self._tracker = tracker
        self._ingest = ingest
        self._bounds = bounds
        self._clock = clock
        self._metrics = metrics
        self._channel = channel

    def handle(self, adapter: Adapter, payload: Mapping[str, Any]) -> None:
        """Adapt one gift payload and count it; a payload that cannot be read is counted, not raised."""
        self._metrics.frames.inc()
        try:
            frame = adapter(payload, channel=self._channel)
            observation = self._tracker.observe(frame)
        except (GiftRejected, ValidationError) as exc:
            self._metrics.parse_failures("adapter").inc()
            log.error("gift payload not understood", error=str(exc), payload=_preview(payload))
            return
        if observation.replay:
            self._metrics.replays.inc()
        self._forward(observation.counted)

    def sweep(self) -> None:
        self._forward(self._tracker.expire())

    def flush(self) -> None:
        self._forward(self._tracker.settle_all())

    async def sweep_forever(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            self.sweep()

    def _forward(self, counted: list[Counted]) -> None:
        for item in counted:
            problems = bound_violations(item.event, self._bounds, self._clock.wall_ms())
            if problems:
                self._metrics.parse_failures("bounds").inc()
                log.error(
                    "gift outside the configured bounds",
                    problems=[f"{p.field}: {p.reason}" for p in problems],
                    gift=item.event.model_dump(by_alias=True),
                )
                continue
            try:
                self._ingest.submit(normalise(item.event))
            except IngestBufferFull as exc:
                log.error("gift lost: ingest buffer full", error=str(exc))
                continue
            self._metrics.gifts(item.how).inc()
            log.info(
                "gift counted",
                event_id=item.event.event_id,
                gift=item.event.gift_name,
                quantity=item.event.quantity,
                how=item.how,
            )
        self._metrics.open_streaks.set(self._tracker.open_streaks)


def _preview(payload: object) -> str:
    return repr(payload)[:300]
