"""Time as an interface, so what depends on it is tested without sleeping.

The one clock seam of the cloud side: the sources (streak timeouts, backoff, budgets), the API
(event timestamps, signature windows, feedback stamps), the worker (rate-limit windows, lease
heartbeats, waits) and its ledger (record stamps, deadlines) take a Clock.
The edge's step timing has its own (edge/motor/clock.py): a clock a motor's steps are paced on.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (timeouts, budgets)."""
        ...

    def wall_ms(self) -> int:
        """Unix time in milliseconds (event timestamps, bounds checks)."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to (tests, replays)."""

    def __init__(self, *, monotonic: float = 0.0, wall_ms: int = 1_700_000_000_000) -> None:
        self._monotonic = monotonic
        self._wall_ms = wall_ms

    def monotonic(self) -> float:
        return self._monotonic

    def wall_ms(self) -> int:
        return self._wall_ms

    def advance(self, seconds: float) -> None:
        self._monotonic += seconds
        self._wall_ms += round(seconds * 1000)
