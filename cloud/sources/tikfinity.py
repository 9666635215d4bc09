"""The TikFinity bridge: TikFinity's local WebSocket feed (TikTok-Live-Connector shape) in.

TikFinity publishes ``{"event": "<type>", "data": {...}}`` text frames on ws://127.0.0.1:21213;
gift frames go through the same adapter, streak and dedupe rules as the direct TikTok source.
"""

from __future__ import annotations

import asyncio

import orjson
import structlog
from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from cloud.sources.adapters import frame_from_connector
from cloud.sources.backoff import Backoff
from cloud.sources.metrics import SourceMetrics
from cloud.sources.pipeline import GiftPipeline
from cloud.sources.settings import TikFinitySettings
from giftwheel.clock import Clock

log = structlog.get_logger(__name__)


class TikFinitySource:
    def __init__(
        self,
        settings: TikFinitySettings,
        *,
        url: str,
        pipeline: GiftPipeline,
        metrics: SourceMetrics,
        clock: Clock,
    ) -> None:
        self._settings = settings
        self._url = url
        self._pipeline = pipeline
        self._metrics = metrics
        self._clock = clock

    async def run(self) -> None:
        """Stay connected to TikFinity until cancelled, reconnecting with backoff."""
        backoff = Backoff(self._settings.backoff)
        lost_at: float | None = None
        while True:
            try:
                async with connect(self._url, open_timeout=10, max_size=2**22) as ws:
                    self._metrics.connected.set(1)
                    if lost_at is not None:
                        self._metrics.gap_seconds.observe(self._clock.monotonic() - lost_at)
                    log.info("tikfinity connected", url=self._url)
                    backoff.reset()
                    try:
                        async for message in ws:
                            self.on_message(message)
                    finally:
                        self._metrics.connected.set(0)
                        lost_at = self._clock.monotonic()
            except (OSError, TimeoutError, WebSocketException) as exc:
                log.warning("tikfinity unreachable", url=self._url, error=str(exc) or type(exc).__name__)
            self._metrics.reconnects.inc()
            await asyncio.sleep(backoff.next_delay_s())

    def on_message(self, message: str | bytes) -> None:
        self._metrics.messages.inc()
        try:
            document = orjson.loads(message)
        except orjson.JSONDecodeError:
            self._metrics.parse_failures("frame").inc()
            log.error("tikfinity frame is not JSON", frame=repr(message)[:200])
            return
        if not isinstance(document, dict) or not isinstance(document.get("event"), str):
            self._metrics.parse_failures("frame").inc()
            log.error("tikfinity frame without an event type", frame=repr(message)[:200])
            return
        if document["event"] != "gift":
            return
        data = document.get("data")
        if not isinstance(data, dict):
            self._metrics.parse_failures("frame").inc()
            log.error("tikfinity gift frame without data", frame=repr(message)[:200])
            return
        self._pipeline.handle(frame_from_connector, data)
