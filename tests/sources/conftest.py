"""The real ingest API on a real Redis, and a source pipeline wired to it, for replay tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry
from redis.asyncio import Redis

from cloud.api.app import create_app
from cloud.settings import CloudSettings
from cloud.sources.ingest_client import IngestClient
from cloud.sources.metrics import SourceMetrics
from cloud.sources.pipeline import GiftPipeline
from cloud.sources.settings import SourceSettings
from cloud.sources.streaks import StreakTracker
from devstack.asgi_server import serve
from devstack.redis_server import RedisServer
from giftwheel.clock import ManualClock
from giftwheel.contracts import EVENTS_STREAM
from tests.sources.replay import STREAMER

API_KEY = "source-test-key-0123456789"
# The recorded sequences start at this time; the API's clock is set just after it, so their
# timestamps are as fresh as when they were recorded.
RECORDED_AT_S = 1_700_000_000 + 60


async def until_sample(metrics: SourceMetrics, name: str, count: float) -> None:
    """Wait until a source's counter reaches ``count``."""
    labels = {"source": metrics.source, "channel": metrics.channel}
    # A Prometheus counter has nothing to await: poll it.
    while (metrics.registry.get_sample_value(name, labels) or 0) < count:  # noqa: ASYNC110
        await asyncio.sleep(0.01)


@dataclass
class Rig:
    """One source's pipeline feeding the real ingest API."""

    settings: SourceSettings
    clock: ManualClock
    metrics: SourceMetrics
    ingest: IngestClient
    pipeline: GiftPipeline
    redis: Redis

    def metric(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(
            name, {"source": "test", "channel": STREAMER, **labels}
        )
        return value or 0.0

    async def until_messages(self, count: int) -> None:
        """Wait until the source has read ``count`` upstream messages."""
        await until_sample(self.metrics, "giftwheel_source_messages_total", count)

    async def stored(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        for _, fields in await self.redis.xrange(EVENTS_STREAM) or []:
            assert fields is not None
            events.append(orjson.loads(fields["event"]))
        return events

    async def settle(self, timeout_s: float = 10.0) -> None:
        """Sweep streaks due at the current (manual) time, then wait until ingest acked all."""
        self.pipeline.sweep()
        assert await self.ingest.drain(timeout_s), f"{self.ingest.pending} events never acked"


@pytest.fixture
async def rig(redis_server: RedisServer, redis: Redis) -> AsyncIterator[Rig]:
    api_settings = CloudSettings(redis_url=redis_server.url, api_keys=API_KEY)
    async with serve(create_app(api_settings, clock=ManualClock(wall_ms=RECORDED_AT_S * 1000))) as url:
        settings = SourceSettings(
            api_url=url,
            api_key=API_KEY,
            ingest_client={"backoff": {"initial_s": 0.05, "max_s": 0.5}},
            tiktok={"backoff": {"initial_s": 1, "max_s": 30}},
        )
        clock = ManualClock(wall_ms=RECORDED_AT_S * 1000)
        metrics = SourceMetrics("test", STREAMER, CollectorRegistry())
        ingest = IngestClient(settings, metrics)
        pipeline = GiftPipeline(
            tracker=StreakTracker(clock, settings.streaks),
            ingest=ingest,
            bounds=settings.bounds,
            clock=clock,
            metrics=metrics,
            channel=STREAMER,
        )
        task = asyncio.create_task(ingest.run())
        try:
            yield Rig(settings, clock, metrics, ingest, pipeline, redis)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
