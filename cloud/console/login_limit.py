"""Failed logins counted per client address in a fixed window, in Redis so every API process shares it."""

from __future__ import annotations

from redis.asyncio import Redis, RedisCluster

_PREFIX = "giftwheel:console:login-failures:"


class LoginLimit:
    def __init__(self, redis: Redis | RedisCluster, *, failures_max: int, window_s: int) -> None:
        self._redis = redis
        self._failures_max = failures_max
        self.window_s = window_s

    async def blocked_for_s(self, client: str) -> int:
        """0 when this client may try to log in; else the seconds until it may again."""
        key = _PREFIX + client
        failures = await self._redis.get(key)
        if failures is None or int(failures) < self._failures_max:
            return 0
        return max(1, int(await self._redis.ttl(key)))

    async def failed(self, client: str) -> None:
        key = _PREFIX + client
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, self.window_s, nx=True)
            await pipe.execute()
