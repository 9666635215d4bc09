"""Shard leases: one owner per shard, fair shares, a silent owner's shards free after the TTL."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from cloud.worker.leases import ShardLeases, lease_key
from giftwheel.contracts import event_streams

STREAMS = event_streams(4)


async def test_a_lone_worker_owns_every_shard_and_a_newcomer_gets_its_share(redis: Redis) -> None:
    a = ShardLeases(redis, "a", STREAMS, ttl_ms=5000)
    gained, dropped = await a.tick()
    assert (gained, dropped) == (set(STREAMS), set())

    b = ShardLeases(redis, "b", STREAMS, ttl_ms=5000)
    assert await b.tick() == (set(), set())  # all taken; but b is now a live worker
    gained, dropped = await a.tick()
    assert gained == set()
    assert len(dropped) == 2  # a hands over its surplus ...
    for stream in dropped:
        await a.release(stream)
    gained, _ = await b.tick()
    assert gained == dropped  # ... and b takes exactly that
    owners = [str(await redis.get(lease_key(s))) for s in STREAMS]
    assert sorted(owners) == ["a", "a", "b", "b"]


async def test_a_silent_worker_loses_its_shards_after_the_ttl(redis: Redis) -> None:
    a = ShardLeases(redis, "a", STREAMS, ttl_ms=300)
    b = ShardLeases(redis, "b", STREAMS, ttl_ms=300)
    await a.tick()
    await b.tick()
    await asyncio.sleep(0.4)  # a stops renewing (killed)
    await b.tick()
    assert b.owned == set(STREAMS)
    # a comes back from a pause: its renewals fail, it learns it lost everything.
    gained, dropped = await a.tick()
    assert (gained, dropped) == (set(), set(STREAMS))
    assert a.owned == set()


async def test_leave_releases_and_deregisters(redis: Redis) -> None:
    a = ShardLeases(redis, "a", STREAMS, ttl_ms=5000)
    await a.tick()
    await a.leave()
    assert [await redis.get(lease_key(s)) for s in STREAMS] == [None] * 4
    assert await redis.zcard("giftwheel:workers") == 0
