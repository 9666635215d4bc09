"""POST /v1/events against a real Redis: accept, dedupe, concurrency, every rejection class."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from giftwheel.contracts import EVENTS_STREAM, GiftEvent
from tests.ingest.conftest import Api, gift, read_metrics


async def stream_events(redis: Redis) -> list[GiftEvent]:
    entries: Any = await redis.xrange(EVENTS_STREAM)
    return [GiftEvent.model_validate_json(fields["event"]) for _, fields in entries]


async def test_accepted_event_is_in_the_stream(api: Api, redis: Redis) -> None:
    response = await api.post(gift(eventId="tiktok:1", diamond=10, quantity=3))
    assert response.status_code == 202
    assert response.json() == {"eventId": "tiktok:1", "duplicate": False}
    [stored] = await stream_events(redis)
    assert (stored.event_id, stored.diamond, stored.quantity, stored.rounds) == ("tiktok:1", 10, 3, 30)


async def test_replay_is_a_duplicate_and_adds_nothing(api: Api, redis: Redis) -> None:
    first = await api.post(gift(eventId="tiktok:2"))
    replay = await api.post(gift(eventId="tiktok:2"))
    assert first.status_code == 202
    assert replay.status_code == 200
    assert replay.json() == {"eventId": "tiktok:2", "duplicate": True}
    assert await redis.xlen(EVENTS_STREAM) == 1


async def test_event_without_id_gets_a_deterministic_one(api: Api, redis: Redis) -> None:
    event = gift()
    first = await api.post(event)
    retry = await api.post(event)
    assert first.json()["eventId"] == retry.json()["eventId"]
    assert first.json()["eventId"].startswith("tiktok:h:")
    assert retry.json()["duplicate"] is True
    assert await redis.xlen(EVENTS_STREAM) == 1


async def test_concurrent_replays_store_one_entry(api: Api, redis: Redis) -> None:
    event = gift(eventId="tiktok:race")
    responses = await asyncio.gather(*(api.post(event) for _ in range(50)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 49 + [202]
    assert await redis.xlen(EVENTS_STREAM) == 1


def _now_ms() -> int:
    return int(time.time() * 1000)


REJECTIONS: list[tuple[str, Any, str]] = [
    ("malformed JSON", b'{"event": "gift",', ""),
    ("not an object", b"[1, 2]", ""),
    ("wrong type", gift(diamond="10"), "diamond"),
    ("float quantity", gift(quantity=1.5), "quantity"),
    ("boolean diamond", gift(diamond=True), "diamond"),
    ("diamond zero", gift(diamond=0), "diamond"),
    ("diamond over bound", gift(diamond=100_001), "diamond"),
    ("quantity over bound", gift(quantity=10_001), "quantity"),
    ("negative quantity", gift(quantity=-1), "quantity"),
    ("user id too long", gift(userId="u" * 129), "userId"),
    ("gift name too long", gift(giftName="g" * 65), "giftName"),
    ("empty user id", gift(userId=""), "userId"),
    ("bad event id", gift(eventId="has space"), "eventId"),
    ("unknown field", gift(colour="red"), "colour"),
    ("unknown event type", gift(event="like"), "event"),
    ("missing field", {k: v for k, v in gift().items() if k != "giftName"}, "giftName"),
    ("timestamp too old", gift(timestamp=_now_ms() - 2 * 86_400_000), "timestamp"),
    ("timestamp in the future", gift(timestamp=_now_ms() + 3_600_000), "timestamp"),
    ("bad platform", gift(platform="TikTok!"), "platform"),
]


@pytest.mark.parametrize(("case", "body", "field"), REJECTIONS, ids=[r[0] for r in REJECTIONS])
async def test_bad_input_gets_a_clear_422(api: Api, redis: Redis, case: str, body: Any, field: str) -> None:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    response = await api.client.post(
        "/v1/events", content=content, headers={**api.auth, "content-type": "application/json"}
    )
    assert response.status_code == 422, case
    problem = response.json()
    assert problem["error"] == "invalid"
    assert any(item["field"] == field and item["reason"] for item in problem["detail"]), problem
    assert await redis.xlen(EVENTS_STREAM) == 0


async def test_oversized_body_is_413_before_parsing(api: Api, redis: Redis) -> None:
    big = orjson.dumps(gift(giftName="x" * 20_000))
    response = await api.client.post(
        "/v1/events", content=big, headers={**api.auth, "content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert await redis.xlen(EVENTS_STREAM) == 0


async def test_metrics_count_outcomes(api: Api) -> None:
    await api.post(gift(eventId="m:1"))
    await api.post(gift(eventId="m:1"))
    await api.post(gift(diamond=0))
    text = await read_metrics(api.client)
    assert 'giftwheel_ingest_accepted_total{endpoint="single"} 1.0' in text
    assert 'giftwheel_ingest_duplicates_total{endpoint="single"} 1.0' in text
    assert 'giftwheel_ingest_rejected_total{endpoint="single",reason="invalid"} 1.0' in text
    assert 'giftwheel_ingest_seconds_count{endpoint="single"} 2.0' in text
