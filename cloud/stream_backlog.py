"""How many entries of one gift stream the worker group has not processed yet (lag plus pending)."""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError

from cloud.redis_text import as_text
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
        if as_text(name) != WORKER_GROUP:
            continue
        if group.get("lag") is None:
            return group_backlog(group, await redis.xlen(stream))
        return group_backlog(group, 0)
    return int(await redis.xlen(stream))


def group_backlog(group: dict[Any, Any], length: int) -> int:
    """The backlog of one XINFO GROUPS entry; ``length`` (the stream's) is the upper bound used
    where Redis cannot compute the lag (after deletions in the range)."""
    lag = group.get("lag")
    return int(length if lag is None else lag) + int(group.get("pending", 0))
