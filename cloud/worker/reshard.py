"""``giftwheel worker reshard``: change the agreed stream shard count, only when nothing is in flight.

Events are routed by ``crc32(eventId) % shards``, and each stream shard has its own dedupe and
assignment keys: entries left in the old streams would never be read again, and a worker still
reading them would hold shards that no longer exist. So the change is refused while a worker is
alive or the old streams hold unprocessed entries.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis, RedisCluster

from cloud.agreement import AGREED_KEY, Agreed, Agreement, record_of
from cloud.ingest.queue import GiftQueue
from cloud.worker.leases import WORKERS_KEY
from cloud.worker.settings import WorkerProcessSettings


class ReshardRefused(RuntimeError):
    """Changing the shard count now would strand entries or leave workers on the old streams."""


async def reshard(redis: Redis | RedisCluster, settings: WorkerProcessSettings) -> str:
    """Record ``settings``' shard count as the agreed one; returns what changed, in words."""
    record = record_of(await redis.hgetall(AGREED_KEY))  # type: ignore[arg-type]
    new = settings.ingest.stream_shards
    old = int(record["stream_shards"]) if "stream_shards" in record else None
    if old == new:
        return f"the agreed stream shard count is already {new}: nothing to change"
    now_ms = time.time_ns() // 1_000_000
    live = int(await redis.zcount(WORKERS_KEY, now_ms - settings.worker.lease_ttl_ms, "+inf"))
    if live:
        raise ReshardRefused(
            f"{live} worker(s) still running on the old {old} shard(s): stop the sources and the APIs, "
            "let the workers drain the backlog, stop the workers, then run this again"
        )
    if old is not None:
        queue = GiftQueue(redis, shards=old, dedupe_ttl_s=settings.ingest.dedupe_ttl_s)
        if backlog := await queue.backlog():
            raise ReshardRefused(
                f"the old {old} stream shard(s) still hold {backlog} unprocessed entries, which would "
                "never be read again: start the workers with the old count until giftwheel_worker_lag "
                "is 0, stop them, then run this again"
            )
    await redis.delete(AGREED_KEY)
    await Agreement(redis, Agreed(new), role="giftwheel worker reshard").check()
    return f"agreed stream shards: {old if old is not None else 'none recorded'} -> {new}"
