"""Trimming the control stream against a real Redis: acknowledged entries past the retention go; an
entry pending with a consumer or not read yet stays, whatever its age, and is still claimed."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis

from cloud.stream_trim import trim_acknowledged
from giftwheel.contracts.control import CONTROL_FIELD, CONTROL_GROUP, CONTROL_STREAM

NOW_MS = 1_800_000_000_000
OLD_MS = NOW_MS - 7 * 86_400_000  # a week old: far past the retention below
RETAIN_MS = 3_600_000


async def ids(redis: Redis) -> list[str]:
    rows: Any = await redis.xrange(CONTROL_STREAM)
    return [entry_id for entry_id, _ in rows]


async def read(redis: Redis, consumer: str, count: int) -> list[str]:
    rows: Any = await redis.xreadgroup(CONTROL_GROUP, consumer, {CONTROL_STREAM: ">"}, count=count)
    return [entry_id for entry_id, _ in rows[0][1]]


async def add_old(redis: Redis, count: int) -> list[str]:
    """``count`` entries a week old, oldest first."""
    return [
        str(await redis.xadd(CONTROL_STREAM, {CONTROL_FIELD: f"{i}"}, id=f"{OLD_MS + i}-0"))
        for i in range(count)
    ]


async def trim(redis: Redis) -> int:
    return await trim_acknowledged(redis, CONTROL_STREAM, CONTROL_GROUP, before_ms=NOW_MS - RETAIN_MS)


async def test_only_acknowledged_entries_past_the_retention_go(redis: Redis) -> None:
    assert await trim(redis) == 0  # no stream yet
    old = await add_old(redis, 5)
    recent = str(await redis.xadd(CONTROL_STREAM, {CONTROL_FIELD: "recent"}, id=f"{NOW_MS}-0"))
    assert await trim(redis) == 0  # no group: nothing is known to be done
    await redis.xgroup_create(CONTROL_STREAM, CONTROL_GROUP, id="0")

    # old[0] acked, old[1] pending with a worker, old[2:] and recent never read.
    assert await read(redis, "a", 2) == old[:2]
    await redis.xack(CONTROL_STREAM, CONTROL_GROUP, old[0])
    assert await trim(redis) == 1
    assert await ids(redis) == [*old[1:], recent]

    # old[1] acked; old[2:] read, old[2] and old[4] acked, old[3] pending: the acknowledged ones
    # before the oldest pending go, the one after it waits for it.
    await redis.xack(CONTROL_STREAM, CONTROL_GROUP, old[1])
    assert await read(redis, "b", 3) == old[2:]
    await redis.xack(CONTROL_STREAM, CONTROL_GROUP, old[2], old[4])
    assert await trim(redis) == 2
    assert await ids(redis) == [old[3], old[4], recent]

    # The pending one, left by a worker that died, is still there to be claimed and carried out.
    claimed: Any = await redis.xautoclaim(CONTROL_STREAM, CONTROL_GROUP, "c", 0, "0-0")
    assert [(entry_id, fields) for entry_id, fields in claimed[1]] == [(old[3], {CONTROL_FIELD: "3"})]
    await redis.xack(CONTROL_STREAM, CONTROL_GROUP, old[3])
    assert await read(redis, "c", 1) == [recent]
    await redis.xack(CONTROL_STREAM, CONTROL_GROUP, recent)
    assert await trim(redis) == 2
    assert await ids(redis) == [recent]  # acknowledged, but within the retention

    later = await trim_acknowledged(redis, CONTROL_STREAM, CONTROL_GROUP, before_ms=NOW_MS + RETAIN_MS)
    assert later == 1
    assert await ids(redis) == []


async def test_a_backlog_no_worker_read_is_kept_however_old(redis: Redis) -> None:
    await redis.xgroup_create(CONTROL_STREAM, CONTROL_GROUP, id="0", mkstream=True)
    waiting = await add_old(redis, 200)
    assert await trim(redis) == 0
    assert await ids(redis) == waiting
