"""How many entries of one gift stream the worker group has not processed yet (lag plus pending)."""

from __future__ import annotations

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError

from giftwheel.contracts import WORKER_GROUP


async def stream_backlog(redis: Redis | RedisCluster, stream: str) -> int:
    """0 for a stream that does not exist; every entry of one no worker group reads yet."""
    try:
        groups = await redis.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return 0
        raise
    for group in groups:
        name = group["name"]
        if (name.decode() if isinstance(name, bytes) else name) != WORKER_GROUP:
            continue
        lag = group.get("lag")
        pending = int(group.get("pending", 0))
        if lag is None:
            # Redis cannot compute lag after deletions in the range; fall back to the upper bound.
            lag = await redis.xlen(stream)
        return int(lag) + pending
    return int(await redis.xlen(stream))
