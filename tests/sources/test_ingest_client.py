"""IngestClient against a local WebSocket server speaking the ingest protocol."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from websockets.asyncio.server import ServerConnection, serve
from websockets.http11 import Request, Response

from cloud.sources.ingest_client import IngestBufferFull, IngestClient
from cloud.sources.metrics import SourceMetrics
from cloud.sources.settings import SourceSettings
from devstack.ports import free_port
from giftwheel.contracts import GiftEvent
from tests.sources.fake_ingest import FakeIngest, fake_ingest


def _event(n: int) -> GiftEvent:
    return GiftEvent(
        event_id=f"test:{n}",
        platform="tiktok",
        user_id=f"user-{n % 7}",
        gift_name="Rose",
        diamond=1,
        quantity=1 + n % 3,
        timestamp=1_700_000_000_000 + n,
    )


def _settings(url: str, **client: Any) -> SourceSettings:
    limits = {"backoff": {"initial_s": 0.05, "max_s": 0.2}, **client}
    return SourceSettings(api_url=url, api_key="k" * 20, ingest_client=limits)


def _metric(metrics: SourceMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, {"source": "test", "channel": "c", **labels})
    return value or 0.0


@asynccontextmanager
async def running(fake: FakeIngest, **client: Any) -> AsyncIterator[tuple[IngestClient, SourceMetrics]]:
    metrics = SourceMetrics("test", "c", CollectorRegistry())
    ingest = IngestClient(_settings(fake.url, **client), metrics)
    task = asyncio.create_task(ingest.run())
    try:
        yield ingest, metrics
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_every_event_is_acked_and_stored_once() -> None:
    async with fake_ingest() as fake, running(fake, max_frame_events=50) as (ingest, metrics):
        for n in range(1_000):
            ingest.submit(_event(n))
        assert await ingest.drain(10)
        assert set(fake.stored) == {f"test:{n}" for n in range(1_000)}
        assert fake.stored["test:4"] == _event(4).model_dump(by_alias=True, exclude_none=True, exclude={"v"})
        assert fake.received == 1_000
        assert fake.auth_headers == ["Bearer " + "k" * 20]
        assert _metric(metrics, "giftwheel_source_ingest_acked_total", result="accepted") == 1_000
        assert _metric(metrics, "giftwheel_source_buffer_events") == 0


async def test_submitting_an_event_twice_sends_it_once() -> None:
    async with fake_ingest() as fake, running(fake) as (ingest, _):
        ingest.submit(_event(1))
        ingest.submit(_event(1))
        assert await ingest.drain(5)
        assert fake.received == 1


async def test_a_dropped_connection_resends_what_was_not_acked() -> None:
    async with fake_ingest() as fake:
        fake.drop_after = 300
        async with running(fake, max_frame_events=20) as (ingest, metrics):
            for n in range(1_000):
                ingest.submit(_event(n))
            assert await ingest.drain(10)
        assert fake.connections == 2
        assert set(fake.stored) == {f"test:{n}" for n in range(1_000)}
        # The events in flight when the line dropped went twice; the API's dedupe absorbs them.
        assert fake.received > 1_000
        assert _metric(metrics, "giftwheel_source_ingest_reconnects_total") == 1


async def test_the_client_waits_while_the_api_is_away() -> None:
    async with fake_ingest() as fake:
        port = fake.port
    metrics = SourceMetrics("test", "c", CollectorRegistry())
    ingest = IngestClient(_settings(f"http://127.0.0.1:{port}"), metrics)
    task = asyncio.create_task(ingest.run())
    for n in range(10):
        ingest.submit(_event(n))
    assert not await ingest.drain(0.5)
    assert _metric(metrics, "giftwheel_source_ingest_reconnects_total") >= 2
    fake = FakeIngest(port=port)
    async with serve(fake.handler, "127.0.0.1", port):
        assert await ingest.drain(5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(fake.stored) == 10


async def test_unavailable_and_backlog_answers_are_retried_after_retry_after() -> None:
    refusals = {"test:3": "unavailable", "test:5": "backlog"}

    def decide(event: dict[str, Any]) -> dict[str, Any] | None:
        reason = refusals.pop(event["eventId"], None)
        return None if reason is None else {"error": reason, "detail": "busy", "retryAfter": 0.2}

    async with fake_ingest() as fake:
        fake.decide = decide
        async with running(fake) as (ingest, metrics):
            for n in range(8):
                ingest.submit(_event(n))
            assert await ingest.drain(5)
        assert set(fake.stored) == {f"test:{n}" for n in range(8)}
        assert fake.connections == 1
        assert _metric(metrics, "giftwheel_source_ingest_retries_total", reason="unavailable") == 1
        assert _metric(metrics, "giftwheel_source_ingest_retries_total", reason="backlog") == 1


async def test_rejected_events_are_counted_and_not_retried() -> None:
    def decide(event: dict[str, Any]) -> dict[str, Any] | None:
        return {"error": "rejected", "detail": "quantity: too big"} if event["eventId"] == "test:2" else None

    async with fake_ingest() as fake:
        fake.decide = decide
        async with running(fake) as (ingest, metrics):
            for n in range(4):
                ingest.submit(_event(n))
            assert await ingest.drain(5)
        assert sorted(fake.stored) == ["test:0", "test:1", "test:3"]
        assert fake.received == 4
        assert _metric(metrics, "giftwheel_source_ingest_rejected_total") == 1


async def test_a_full_buffer_refuses_loudly() -> None:
    metrics = SourceMetrics("test", "c", CollectorRegistry())
    ingest = IngestClient(_settings("http://127.0.0.1:9", buffer_max_events=3), metrics)
    for n in range(3):
        ingest.submit(_event(n))
    with pytest.raises(IngestBufferFull, match="buffer_max_events"):
        ingest.submit(_event(3))
    assert ingest.pending == 3
    assert _metric(metrics, "giftwheel_source_buffer_full_total") == 1


async def test_a_refused_key_keeps_the_gifts_and_keeps_trying() -> None:
    fake = FakeIngest(port=free_port())
    refusing = True

    def gate(connection: ServerConnection, _request: Request) -> Response | None:
        return connection.respond(HTTPStatus.UNAUTHORIZED, "bad key\n") if refusing else None

    async with serve(fake.handler, "127.0.0.1", fake.port, process_request=gate):
        metrics = SourceMetrics("test", "c", CollectorRegistry())
        ingest = IngestClient(_settings(fake.url), metrics)
        task = asyncio.create_task(ingest.run())
        try:
            for n in range(3):
                ingest.submit(_event(n))
            assert not await ingest.drain(0.5)
            assert ingest.pending == 3
            assert _metric(metrics, "giftwheel_source_ingest_reconnects_total") >= 2
            refusing = False  # the operator fixed the key on the API side
            assert await ingest.drain(5)
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    assert len(fake.stored) == 3
