"""GiftQueue: the only code that writes gift events to the Redis stream, and reads its backlog."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from importlib import resources
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError, ResponseError

from cloud.ingest.errors import QueueUnavailable
from giftwheel.contracts import (
    DEDUPE_MARK,
    WORKER_GROUP,
    GiftEvent,
    dedupe_key,
    event_stream,
    event_streams,
    shard_of,
)

_APPEND_LUA = resources.files("cloud.ingest").joinpath("append.lua").read_text()


@dataclass(frozen=True, slots=True)
class Appended:
    event_id: str
    entry_id: str
    duplicate: bool


class GiftQueue:
    def __init__(self, redis: Redis | RedisCluster, *, shards: int, dedupe_ttl_s: int) -> None:
        self._redis = redis
        self._shards = shards
        self._dedupe_ttl_s = dedupe_ttl_s
        self._append = redis.register_script(_APPEND_LUA)

    @property
    def streams(self) -> list[str]:
        return event_streams(self._shards)

    async def append(self, events: list[GiftEvent]) -> list[Appended]:
        """Append events not seen within the dedupe TTL; one script call per shard touched.

        Raises QueueUnavailable when Redis fails; then none of the results are known, and the
        caller must report every event as not accepted (a retry is safe: it dedupes).
        """
        by_shard: dict[int, list[int]] = defaultdict(list)
        for index, event in enumerate(events):
            by_shard[shard_of(event.event_id, self._shards)].append(index)
        results: list[Appended | None] = [None] * len(events)
        try:
            for shard, indexes in by_shard.items():
                stream = event_stream(shard, self._shards)
                keys = [stream, *(dedupe_key(stream, events[i].event_id) for i in indexes)]
                args: list[Any] = [self._dedupe_ttl_s, *(events[i].to_json() for i in indexes)]
                replies = await self._append(keys=keys, args=args)
                for index, reply in zip(indexes, replies, strict=True):
                    text = reply.decode() if isinstance(reply, bytes) else str(reply)
                    duplicate = text.startswith(DEDUPE_MARK)
                    entry_id = text.removeprefix(DEDUPE_MARK)
                    results[index] = Appended(events[index].event_id, entry_id, duplicate)
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(str(exc) or type(exc).__name__) from exc
        return [result for result in results if result is not None]

    async def backlog(self) -> int:
        """Entries not yet processed by the worker group: its lag plus its pending entries."""
        total = 0
        try:
            for stream in self.streams:
                total += await self._stream_backlog(stream)
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(str(exc) or type(exc).__name__) from exc
        return total

    async def _stream_backlog(self, stream: str) -> int:
        try:
            groups = await self._redis.xinfo_groups(stream)
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
                lag = await self._redis.xlen(stream)
            return int(lag) + pending
        return int(await self._redis.xlen(stream))

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False
