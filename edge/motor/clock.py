"""Time for the motor loop: the real monotonic clock, or a scaled one so simulated tests run fast."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic timeline (the timeline step records and ramps are measured on)."""
        ...

    def sleep_until(self, deadline: float) -> None:
        """Return at (or just after) ``deadline`` on this clock's timeline."""
        ...


class MonotonicClock:
    """The real clock. Sleeping to absolute deadlines keeps jitter from adding up into rate error."""

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)


class ScaledClock:
    """Runs ``scale`` times faster than real time: a 10 s move takes 10/scale s and records as 10 s."""

    def __init__(self, scale: float) -> None:
        if scale <= 0:
            raise ValueError("time scale must be positive")
        self.scale = scale
        self._origin = time.monotonic()

    def now(self) -> float:
        return self._origin + (time.monotonic() - self._origin) * self.scale

    def sleep_until(self, deadline: float) -> None:
        remaining = (deadline - self.now()) / self.scale
        if remaining > 0:
            time.sleep(remaining)
