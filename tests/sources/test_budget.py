"""SignBudget and the 429 wait: pure, on a manual clock."""

from __future__ import annotations

import httpx
import pytest

from cloud.sources.budget import SignBudget
from cloud.sources.settings import SignBudgetSettings
from cloud.sources.tiktok import retry_after_s
from giftwheel.clock import ManualClock


def test_each_window_limits_the_starts_within_it() -> None:
    clock = ManualClock()
    budget = SignBudget(SignBudgetSettings(per_minute=2, per_hour=3, per_day=120), clock)
    for _ in range(2):
        assert budget.wait_s() == 0
        budget.spend()
        clock.advance(10)
    # Third start in the minute: wait until the first one is 60 s old.
    assert budget.wait_s() == pytest.approx(40)
    clock.advance(40)
    assert budget.wait_s() == 0
    budget.spend()
    # Fourth start in the hour: wait until the first one is an hour old.
    clock.advance(60)
    assert budget.wait_s() == pytest.approx(3_600 - 120)


def test_a_429_blocks_until_its_time_has_passed() -> None:
    clock = ManualClock()
    budget = SignBudget(SignBudgetSettings(), clock)
    budget.block_for(42)
    assert budget.wait_s() == pytest.approx(42)
    clock.advance(42)
    assert budget.wait_s() == 0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "30"}, 30.0),
        ({"RateLimit-Reset": "1700000090"}, 90.0),  # an absolute unix time
        ({"RateLimit-Reset": "15"}, 15.0),  # seconds from now
        ({"Retry-After": "soon", "X-RateLimit-Reset": "7"}, 7.0),
        ({"Retry-After": "0"}, 1.0),  # never hammer the server
        ({"Retry-After": "9999999"}, 86_400.0),
        ({}, 300.0),  # no hint: the configured maximum backoff
    ],
)
def test_the_wait_a_429_asks_for(headers: dict[str, str], expected: float) -> None:
    response = httpx.Response(429, headers=headers)
    assert retry_after_s(response, now_s=1_700_000_000, default_s=300) == expected
