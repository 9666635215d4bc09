"""Trimming a consumer group's stream without losing its work: only entries the group acknowledged.

``XTRIM MAXLEN`` counts entries, not what the group still needs: past the limit it deletes the
oldest whether read or not, and an entry pending with a consumer that is trimmed away is dropped by
the next XAUTOCLAIM, never carried out. ``XTRIM MINID`` at the oldest entry the group still needs
(its oldest pending one, or the first it has not read yet) deletes only acknowledged entries.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import ResponseError

from cloud.redis_text import as_text


def _id(entry_id: object) -> tuple[int, int]:
    ms, _, seq = as_text(entry_id).partition("-")
    return int(ms), int(seq or 0)


async def trim_acknowledged(redis: Redis | RedisCluster, stream: str, group: str, *, before_ms: int) -> int:
    """Delete the entries of ``stream`` older than ``before_ms`` (their id's time) that ``group`` has
    acknowledged; how many went. None while the stream or the group does not exist.

    Safe against the group reading meanwhile: the entries it reads later have ids above the
    last-delivered id read here, and an acknowledgement only makes fewer entries needed.
    """
    try:
        groups: Any = await redis.xinfo_groups(stream)
    except ResponseError as exc:
        if "no such key" in str(exc).lower():
            return 0
        raise
    found = next((g for g in groups if as_text(g.get("name")) == group), None)
    if found is None:
        return 0
    ms, seq = _id(found.get("last-delivered-id"))
    keep = min((ms, seq + 1), (before_ms, 0))  # the first entry not read yet, or the retention's edge
    if int(found.get("pending") or 0):
        summary: Any = await redis.xpending(stream, group)
        if summary.get("min"):
            keep = min(keep, _id(summary["min"]))
    deleted: int = await redis.xtrim(stream, minid=f"{keep[0]}-{keep[1]}", approximate=False)
    return deleted
