"""Shard ownership: each stream shard is read by one live worker at a time, shares kept even.

Workers announce themselves in a sorted set (score = last heartbeat). Each heartbeat a worker
renews its leases, gives up shards above its fair share (ceil(shards / live workers)) and takes
free ones up to it, preferring shards by rendezvous hash so that ownership barely moves when a
worker joins or leaves. A lease is a plain key with a TTL, so a killed worker's shards are free
again after ``lease_ttl_ms``.
"""

from __future__ import annotations

import hashlib
import math

from redis.asyncio import Redis, RedisCluster

from giftwheel.clock import Clock, SystemClock
from giftwheel.lua import lua_source

WORKERS_KEY = "giftwheel:workers"

_RENEW = lua_source("cloud.worker", "lease_renew.lua")
RELEASE_IF_OWNER = lua_source("cloud.worker", "lease_release.lua")


def lease_key(stream: str) -> str:
    return f"giftwheel:lease:{stream}"


def _preference(worker: str, stream: str) -> bytes:
    return hashlib.blake2b(f"{worker}|{stream}".encode(), digest_size=8).digest()


class ShardLeases:
    def __init__(
        self,
        redis: Redis | RedisCluster,
        worker_id: str,
        streams: list[str],
        ttl_ms: int,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._redis = redis
        self._clock = clock or SystemClock()
        self.worker_id = worker_id
        self._streams = streams
        self._ttl_ms = ttl_ms
        self.owned: set[str] = set()
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(RELEASE_IF_OWNER)

    async def _live_workers(self) -> int:
        now = self._clock.wall_ms()
        await self._redis.zadd(WORKERS_KEY, {self.worker_id: now})
        await self._redis.zremrangebyscore(WORKERS_KEY, "-inf", now - self._ttl_ms)
        return max(1, int(await self._redis.zcard(WORKERS_KEY)))

    async def tick(self) -> tuple[set[str], set[str]]:
        """Renew, then rebalance. Returns (shards gained, shards lost or to hand over)."""
        lost = set()
        for stream in sorted(self.owned):
            if not await self._renew(keys=[lease_key(stream)], args=[self.worker_id, self._ttl_ms]):
                lost.add(stream)
        self.owned -= lost
        fair = math.ceil(len(self._streams) / await self._live_workers())
        ranked = sorted(self._streams, key=lambda s: _preference(self.worker_id, s), reverse=True)
        surplus = set(
            sorted(self.owned, key=lambda s: _preference(self.worker_id, s))[: len(self.owned) - fair]
        )
        gained: set[str] = set()
        for stream in ranked:
            if len(self.owned) + len(gained) >= fair:
                break
            if stream in self.owned:
                continue
            if await self._redis.set(lease_key(stream), self.worker_id, nx=True, px=self._ttl_ms):
                gained.add(stream)
        self.owned |= gained
        return gained, lost | surplus

    async def release(self, stream: str) -> None:
        self.owned.discard(stream)
        await self._release(keys=[lease_key(stream)], args=[self.worker_id])

    async def leave(self) -> None:
        for stream in list(self.owned):
            await self.release(stream)
        await self._redis.zrem(WORKERS_KEY, self.worker_id)
