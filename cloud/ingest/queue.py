"""GiftQueue: the only code that writes gift events to the Redis stream, and reads its backlog."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import structlog
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from cloud.agreement import Agreement, SettingsDisagree
from cloud.ingest.errors import QueueMisconfigured, QueueUnavailable
from cloud.pipelined_redis import PipelinedRedis
from cloud.redis_text import as_text
from cloud.stream_backlog import stream_backlog
from giftwheel.contracts import (
    DEDUPE_MARK,
    EVENT_FIELD,
    GiftEvent,
    dedupe_key,
    event_stream,
    event_streams,
    shard_of,
)
from giftwheel.lua import lua_source

log = structlog.get_logger(__name__)

_APPEND_LUA = lua_source("cloud.ingest", "append.lua")

RunScript = Callable[[Sequence[Any], Sequence[Any]], Awaitable[Any]]


class Appended(NamedTuple):  # one per event on the hot path: a tuple is the cheapest record
    event_id: str
    entry_id: str
    duplicate: bool


class GiftQueue:
    """Appends through ``pipelined`` when given (one connection, many scripts in flight: the hot
    path), else through ``redis`` (a Redis Cluster routes each shard's script to its node).

    With an ``agreement`` (the API's), nothing is appended before this process's shard count is
    known to be the one the workers read (cloud/agreement.py), and every backlog poll checks it
    again, so a running API notices a changed record."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        shards: int,
        dedupe_ttl_s: int,
        pipelined: PipelinedRedis | None = None,
        agreement: Agreement | None = None,
    ) -> None:
        self._redis = redis
        self._agreement = agreement
        self._agreed = agreement is None
        self._disagreement: str | None = None
        self._shards = shards
        self._dedupe_ttl_s = dedupe_ttl_s
        self._run_append: RunScript
        if pipelined is not None:
            self._run_append = pipelined.script(_APPEND_LUA)
        else:
            script = redis.register_script(_APPEND_LUA)
            self._run_append = lambda keys, args: script(keys=keys, args=args)

    @property
    def streams(self) -> list[str]:
        return event_streams(self._shards)

    async def agree(self) -> None:
        """Check the settings shared with the workers: raises SettingsDisagree on a difference,
        QueueUnavailable when Redis does not answer."""
        if self._agreement is None:
            return
        self._agreed = False
        try:
            await self._agreement.check()
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(str(exc) or type(exc).__name__) from exc
        except SettingsDisagree as exc:
            if self._disagreement != str(exc):
                log.error("settings_disagree", error=str(exc))
            self._disagreement = str(exc)
            raise
        if self._disagreement is not None:
            log.info("settings_agree_again", stream_shards=self._shards)
        self._disagreement = None
        self._agreed = True

    async def _agree_or_unavailable(self) -> None:
        try:
            await self.agree()
        except SettingsDisagree:
            # The whole story is in the log; the sender learns only that it must retry later.
            raise QueueMisconfigured(
                "nothing stored: this API's settings disagree with the workers' (stream shards); "
                "retry after Retry-After (the API's log says what an operator must fix)"
            ) from None

    async def append(self, events: list[GiftEvent]) -> list[Appended]:
        """Append events not seen within the dedupe TTL; one script call per shard touched.

        Raises QueueUnavailable when Redis fails; then none of the results are known, and the
        caller must report every event as not accepted (a retry is safe: it dedupes).
        """
        if not self._agreed:
            await self._agree_or_unavailable()
        by_shard: dict[int, list[int]] = defaultdict(list)
        for index, event in enumerate(events):
            by_shard[shard_of(event.event_id, self._shards)].append(index)
        results: list[Appended | None] = [None] * len(events)
        calls = [
            self._append_shard(shard, [events[i] for i in indexes]) for shard, indexes in by_shard.items()
        ]
        try:
            # One shard (the usual case) is awaited directly: gather would wrap it in a task.
            shard_replies = [await calls[0]] if len(calls) == 1 else await asyncio.gather(*calls)
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(str(exc) or type(exc).__name__) from exc
        for indexes, replies in zip(by_shard.values(), shard_replies, strict=True):
            for index, reply in zip(indexes, replies, strict=True):
                text = as_text(reply)
                duplicate = text.startswith(DEDUPE_MARK)
                results[index] = Appended(events[index].event_id, text.removeprefix(DEDUPE_MARK), duplicate)
        return [result for result in results if result is not None]

    async def _append_shard(self, shard: int, events: list[GiftEvent]) -> list[Any]:
        stream = event_stream(shard, self._shards)
        keys = [stream, *(dedupe_key(stream, event.event_id) for event in events)]
        # The names are the contracts' (the worker reads EVENT_FIELD), given to the script, not copied.
        args: list[Any] = [
            self._dedupe_ttl_s,
            EVENT_FIELD,
            DEDUPE_MARK,
            *(event.to_json() for event in events),
        ]
        replies: list[Any] = await self._run_append(keys, args)
        return replies

    async def backlog(self) -> int:
        """Entries not yet processed by the worker group: its lag plus its pending entries."""
        await self._agree_or_unavailable()
        total = 0
        try:
            for stream in self.streams:
                total += await stream_backlog(self._redis, stream)
        except (RedisError, OSError) as exc:
            raise QueueUnavailable(str(exc) or type(exc).__name__) from exc
        return total

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False
