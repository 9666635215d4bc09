"""Wires one source process: settings -> ingest client, streak pipeline, source; runs until a signal."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Coroutine
from typing import Any

import structlog
from prometheus_client import start_http_server

from cloud.sources.ingest_client import IngestClient
from cloud.sources.metrics import SourceMetrics
from cloud.sources.pipeline import GiftPipeline
from cloud.sources.settings import SourceSettings
from cloud.sources.streaks import StreakTracker
from giftwheel.clock import SystemClock

log = structlog.get_logger(__name__)

# Builds the source's run() coroutine from the shared parts.
SourceFactory = Callable[[GiftPipeline, IngestClient, SourceMetrics, SystemClock], Coroutine[Any, Any, None]]


async def run_source(settings: SourceSettings, *, name: str, channel: str, source: SourceFactory) -> int:
    clock = SystemClock()
    metrics = SourceMetrics(name, channel)
    if settings.metrics_port:
        start_http_server(settings.metrics_port, registry=metrics.registry)
    ingest = IngestClient(settings, metrics)
    pipeline = GiftPipeline(
        tracker=StreakTracker(clock, settings.streaks),
        ingest=ingest,
        bounds=settings.bounds,
        clock=clock,
        metrics=metrics,
        channel=channel,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    tasks = [
        asyncio.create_task(ingest.run(), name="ingest"),
        asyncio.create_task(pipeline.sweep_forever(settings.streaks.sweep_interval_s), name="sweep"),
        asyncio.create_task(source(pipeline, ingest, metrics, clock), name=name),
    ]
    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait([stopped, *tasks], return_when=asyncio.FIRST_COMPLETED)
    # A source may also just finish (the jsonl source at the end of its file): then stop cleanly.
    failed = [task for task in done if task is not stopped and task.exception() is not None]
    for task in failed:
        log.error("source task ended", task=task.get_name(), error=repr(task.exception()))
    for task in tasks[1:]:
        task.cancel()
    # Streaks still open would be lost with the process: count what was seen of them.
    pipeline.flush()
    drained = await ingest.drain(settings.shutdown_drain_s)
    tasks[0].cancel()
    stopped.cancel()
    await asyncio.gather(*tasks, stopped, return_exceptions=True)
    if not drained:
        log.error("stopping with gifts the ingest API never acked", unacked=ingest.pending)
    if failed:
        return 1
    return 0 if drained else 3
