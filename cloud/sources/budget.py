"""SignBudget: how many connection starts (sign-server calls) are allowed now, and when the next is.

Every TikTok connection start costs one call to the sign server, which limits calls per IP and
per API key by minute, hour and day and answers 429 beyond them. Spending the budget locally keeps
a flapping connection from burning the day's allowance; a 429 blocks until the server's reset.
"""

from __future__ import annotations

from collections import deque

from cloud.sources.settings import SignBudgetSettings
from giftwheel.clock import Clock


class SignBudget:
    def __init__(self, settings: SignBudgetSettings, clock: Clock) -> None:
        self._windows = (
            (60.0, settings.per_minute),
            (3_600.0, settings.per_hour),
            (86_400.0, settings.per_day),
        )
        self._clock = clock
        self._calls: deque[float] = deque()
        self._blocked_until = 0.0

    def wait_s(self) -> float:
        """Seconds until the next call is within every limit (0 when it may go now)."""
        now = self._clock.monotonic()
        wait = self._blocked_until - now
        for window_s, limit in self._windows:
            in_window = [t for t in self._calls if t > now - window_s]
            if len(in_window) >= limit:
                # The call that frees a slot is the limit-th most recent one leaving the window.
                wait = max(wait, in_window[-limit] + window_s - now)
        return max(wait, 0.0)

    def spend(self) -> None:
        now = self._clock.monotonic()
        self._calls.append(now)
        while self._calls and self._calls[0] <= now - self._windows[-1][0]:
            self._calls.popleft()

    def block_for(self, seconds: float) -> None:
        """The sign server said no (429): no call before ``seconds`` from now."""
        self._blocked_until = max(self._blocked_until, self._clock.monotonic() + seconds)
