"""Per-user and global rate limits and a per-user cooldown, shared by all workers through Redis.

Fixed windows: a counter key per user (or globally) per window, expiring with it. A gift over a
limit is skipped with a reason that the ledger records, so the skip is visible, not silent.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from redis.asyncio import Redis, RedisCluster

from cloud.worker.settings import LimitSettings
from giftwheel.clock import Clock, SystemClock
from giftwheel.contracts import GiftEvent

USER_RATE = "user_rate_limit"
USER_COOLDOWN = "user_cooldown"
GLOBAL_RATE = "global_rate_limit"


class Limits:
    def __init__(
        self, redis: Redis | RedisCluster, settings: LimitSettings, *, clock: Clock | None = None
    ) -> None:
        self._redis = redis
        self._s = settings
        # Picks the windows; the cooldown is a key's TTL, so Redis's clock times that one.
        self._clock = clock or SystemClock()

    @property
    def enabled(self) -> bool:
        s = self._s
        return bool(s.user_max_gifts or s.user_cooldown_s or s.global_max_gifts_per_s)

    async def check(self, events: Sequence[GiftEvent]) -> dict[str, str]:
        """Count these events (in order) against the limits; returns the skipped ones with reasons."""
        if not self.enabled or not events:
            return {}
        s = self._s
        now = self._clock.wall_ms() / 1000
        user_window = math.floor(now / s.user_window_s)
        second = math.floor(now)
        async with self._redis.pipeline(transaction=False) as pipe:
            for event in events:
                user = f"{event.platform}:{event.user_id}"
                if s.user_max_gifts:
                    key = f"giftwheel:limit:user:{user}:{user_window}"
                    pipe.incr(key)
                    pipe.expire(key, s.user_window_s + 1)
                if s.user_cooldown_s:
                    pipe.set(f"giftwheel:limit:cooldown:{user}", 1, nx=True, px=int(s.user_cooldown_s * 1000))
                if s.global_max_gifts_per_s:
                    key = f"giftwheel:limit:global:{second}"
                    pipe.incr(key)
                    pipe.expire(key, 2)
            replies = iter(await pipe.execute())
        skipped: dict[str, str] = {}
        for event in events:
            reasons = []
            if s.user_max_gifts:
                count, _ = next(replies), next(replies)
                if int(count) > s.user_max_gifts:
                    reasons.append(USER_RATE)
            if s.user_cooldown_s and not next(replies):
                reasons.append(USER_COOLDOWN)
            if s.global_max_gifts_per_s:
                count, _ = next(replies), next(replies)
                if int(count) > s.global_max_gifts_per_s:
                    reasons.append(GLOBAL_RATE)
            if reasons:
                skipped[event.event_id] = reasons[0]
        return skipped
