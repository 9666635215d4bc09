"""append.lua writes the names the contracts define, given to it by GiftQueue, never its own copies."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from cloud.ingest import queue as queue_module
from cloud.ingest.queue import GiftQueue
from cloud.pipelined_redis import PipelinedRedis
from devstack.redis_server import RedisServer
from giftwheel.contracts import EVENT_FIELD, EVENTS_STREAM, GiftEvent, dedupe_key


def _event(event_id: str) -> GiftEvent:
    return GiftEvent(
        event_id=event_id, platform="tiktok", user_id="u1", gift_name="Rose", diamond=1, quantity=1,
        timestamp=1_700_000_000_000,
    )  # fmt: skip


@pytest.mark.parametrize("path", ["redis-py", "pipelined"])
async def test_entry_field_dedupe_key_and_replay_mark_follow_the_contracts(
    redis_server: RedisServer, redis: Redis, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    # Names no script could hold by chance: a hard-coded 'event' or 'dup:' in the Lua fails here.
    monkeypatch.setattr(queue_module, "EVENT_FIELD", "field-from-the-contract")
    monkeypatch.setattr(queue_module, "DEDUPE_MARK", "mark-from-the-contract:")
    pipelined = (
        PipelinedRedis(redis_server.url, connect_timeout_s=1, reply_timeout_s=2)
        if path == "pipelined"
        else None
    )
    queue = GiftQueue(redis, shards=1, dedupe_ttl_s=600, pipelined=pipelined)
    first = await queue.append([_event("e1")])
    again = await queue.append([_event("e1")])
    if pipelined is not None:
        await pipelined.aclose()

    entries = await redis.xrange(EVENTS_STREAM)
    assert entries == [(first[0].entry_id, {"field-from-the-contract": _event("e1").to_json().decode()})]
    assert await redis.get(dedupe_key(EVENTS_STREAM, "e1")) == first[0].entry_id
    assert not first[0].duplicate
    assert again[0].duplicate
    assert again[0].entry_id == first[0].entry_id


async def test_the_worker_reads_what_ingest_appends(redis: Redis) -> None:
    (appended,) = await GiftQueue(redis, shards=1, dedupe_ttl_s=600).append([_event("e2")])
    # The worker takes the event from EVENT_FIELD (cloud/worker/handler.py).
    assert await redis.xrange(EVENTS_STREAM) == [
        (appended.entry_id, {EVENT_FIELD: _event("e2").to_json().decode()})
    ]
