"""The generic source: normalised gift payloads (giftwheel/contracts/gift.py), one JSON object per line.

For anything that can print gifts as JSON (a webhook relay, a script, a recorded evening):
``giftwheel source jsonl events.jsonl`` or ``... | giftwheel source jsonl -``. Each line is the
shape of giftwheel.contracts.gift, eventId optional (derived from the payload when absent, so a replayed
file dedupes); it goes through the same durable ingest client as the live sources.
"""

from __future__ import annotations

import asyncio
from typing import TextIO

import structlog

from cloud.sources.ingest_client import IngestBufferFull, IngestClient
from cloud.sources.metrics import SourceMetrics
from giftwheel.clock import Clock
from giftwheel.contracts import GiftBounds, GiftRejected, parse_gift

log = structlog.get_logger(__name__)


class JsonLinesSource:
    def __init__(
        self,
        stream: TextIO,
        *,
        ingest: IngestClient,
        bounds: GiftBounds,
        clock: Clock,
        metrics: SourceMetrics,
    ) -> None:
        self._stream = stream
        self._ingest = ingest
        self._bounds = bounds
        self._clock = clock
        self._metrics = metrics
        self._line_number = 0

    async def run(self) -> None:
        """Read to the end of the stream (a pipe may take its time)."""
        while line := await asyncio.to_thread(self._stream.readline):
            self.on_line(line)

    def on_line(self, line: str) -> None:
        self._line_number += 1
        if not line.strip():
            return
        self._metrics.messages.inc()
        try:
            event = parse_gift(line, self._bounds, self._clock.wall_ms())
        except GiftRejected as exc:
            self._metrics.parse_failures("adapter").inc()
            log.error("line is not a gift event", line=self._line_number, error=str(exc))
            return
        self._metrics.frames.inc()
        try:
            self._ingest.submit(event)
        except IngestBufferFull as exc:
            log.error("gift lost: ingest buffer full", line=self._line_number, error=str(exc))
            return
        self._metrics.gifts("arrival").inc()
