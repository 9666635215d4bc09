"""Rate limits and cooldowns, counted in Redis so that every worker shares them."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from cloud.worker.limits import GLOBAL_RATE, USER_COOLDOWN, USER_RATE, Limits
from cloud.worker.settings import LimitSettings
from giftwheel.clock import ManualClock
from tests.worker.conftest import gift


async def test_all_limits_off_by_default_skip_nothing(redis: Redis) -> None:
    limits = Limits(redis, LimitSettings())
    assert not limits.enabled
    assert await limits.check([gift(user_id="u") for _ in range(100)]) == {}


async def test_per_user_limit_counts_each_user_separately(redis: Redis) -> None:
    limits = Limits(redis, LimitSettings(user_max_gifts=2, user_window_s=60))
    a = [gift(user_id="a") for _ in range(3)]
    b = [gift(user_id="b") for _ in range(2)]
    skipped = await limits.check([*a, *b])
    assert skipped == {a[2].event_id: USER_RATE}
    # Another worker's check counts against the same window.
    later = gift(user_id="b")
    assert await Limits(redis, LimitSettings(user_max_gifts=2, user_window_s=60)).check([later]) == {
        later.event_id: USER_RATE
    }


async def test_a_users_count_starts_afresh_in_the_next_window(redis: Redis) -> None:
    clock = ManualClock(wall_ms=1_800_000_000_000)  # the start of a 60 s window
    limits = Limits(redis, LimitSettings(user_max_gifts=1, user_window_s=60), clock=clock)
    first, second, third = gift(user_id="u"), gift(user_id="u"), gift(user_id="u")
    assert await limits.check([first]) == {}
    clock.advance(59.9)
    assert await limits.check([second]) == {second.event_id: USER_RATE}
    clock.advance(0.1)
    assert await limits.check([third]) == {}


async def test_cooldown_skips_a_users_gifts_until_it_has_passed(redis: Redis) -> None:
    # The cooldown is a key's TTL: Redis's clock times it, so this one waits it out.
    limits = Limits(redis, LimitSettings(user_cooldown_s=0.3))
    first, second = gift(user_id="u"), gift(user_id="u")
    other = gift(user_id="v")
    assert await limits.check([first, second, other]) == {second.event_id: USER_COOLDOWN}
    await asyncio.sleep(0.35)
    third = gift(user_id="u")
    assert await limits.check([third]) == {}


async def test_global_limit_per_second(redis: Redis) -> None:
    clock = ManualClock(wall_ms=1_800_000_000_000)
    limits = Limits(redis, LimitSettings(global_max_gifts_per_s=5), clock=clock)
    events = [gift(user_id=f"u{i}") for i in range(8)]
    # One check counts its whole batch in the same one-second window: the first five pass.
    assert await limits.check(events) == {e.event_id: GLOBAL_RATE for e in events[5:]}
    clock.advance(0.999)
    late = gift(user_id="late")
    assert await limits.check([late]) == {late.event_id: GLOBAL_RATE}
    clock.advance(0.001)
    assert await limits.check([late]) == {}
