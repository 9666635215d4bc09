"""Time for the motor loop: the real monotonic clock, or a scaled one so simulated tests run fast."""

from __future__ import annotations

import time
from typing import Protocol

# The most a wait spins before its deadline: the CPU it may burn per step. Linux wakes a sleeping
# thread 40-130 us late on the 2-core test box (50 us of default timer slack plus scheduling); 300 us
# covers that on a quiet box, and a worse wake-up is a late step, which the controller re-plans from.
MAX_SPIN_S = 0.0003
# How fast the lead follows the wake-ups: up one step when a wake-up was later than the lead, down a
# ninth of one when earlier, so it settles near the 90th percentile of the lateness.
LEAD_STEP_S = 2e-6


class Clock(Protocol):
    def now(self) -> float:
        """Seconds on a monotonic timeline (the timeline step records and ramps are measured on)."""
        ...

    def sleep_until(self, deadline: float) -> None:
        """Return at (or just after, never before) ``deadline`` on this clock's timeline."""
        ...

    def sleep_past(self, deadline: float) -> None:
        """Return after ``deadline``, as late as the scheduler makes it: for waits whose lateness
        costs nothing (a timer outside Python plays the pulses), so no CPU is spent to be on time."""
        ...


class DeadlineWaiter:
    """Waits for a time.monotonic() deadline: never returns before it, and aims to return at it.

    A plain sleep returns tens of microseconds late, and the controller never makes lateness up
    (that would be a burst of steps), so every late wake-up would cost rate. Instead it sleeps to a
    lead before the deadline that tracks how late this machine wakes, then spins until the deadline
    (not sched_yield: under load that hands the core to another process for a whole time slice)."""

    def __init__(self, max_spin_s: float = MAX_SPIN_S) -> None:
        self._max_spin_s = max_spin_s
        self._lead_s = 0.0

    def wait(self, deadline: float) -> None:
        wake_at = deadline - self._lead_s
        remaining = wake_at - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
            if time.monotonic() - wake_at > self._lead_s:
                self._lead_s = min(self._max_spin_s, self._lead_s + LEAD_STEP_S)
            else:
                self._lead_s = max(0.0, self._lead_s - LEAD_STEP_S / 9)
        while time.monotonic() < deadline:
            pass


class MonotonicClock:
    """The real clock."""

    def __init__(self, max_spin_s: float = MAX_SPIN_S) -> None:
        self._waiter = DeadlineWaiter(max_spin_s)

    def now(self) -> float:
        return time.monotonic()

    def sleep_until(self, deadline: float) -> None:
        self._waiter.wait(deadline)

    def sleep_past(self, deadline: float) -> None:
        time.sleep(max(0.0, deadline - time.monotonic()))


class ScaledClock:
    """Runs ``scale`` times faster than real time: a 10 s move takes 10/scale s and records as 10 s."""

    def __init__(self, scale: float, max_spin_s: float = MAX_SPIN_S) -> None:
        if scale <= 0:
            raise ValueError("time scale must be positive")
        self.scale = scale
        self._origin = time.monotonic()
        self._waiter = DeadlineWaiter(max_spin_s)

    def now(self) -> float:
        return self._origin + (time.monotonic() - self._origin) * self.scale

    def sleep_until(self, deadline: float) -> None:
        self._waiter.wait(self._real(deadline))

    def sleep_past(self, deadline: float) -> None:
        time.sleep(max(0.0, self._real(deadline) - time.monotonic()))

    def _real(self, deadline: float) -> float:
        return self._origin + (deadline - self._origin) / self.scale
