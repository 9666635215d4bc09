"""Motion checks shared by the controller tests: a virtual clock that runs late on cue, and the
no-burst invariant on recorded pulse times."""

from __future__ import annotations

import itertools

from edge.motor.controller import MotionProfile
from edge.motor.ramp import shortest_interval_after


class JumpyClock:
    """Virtual time: a sleep returns at once at its deadline, except that some return late by a
    chosen amount (a thread descheduled, a blocked write). Step records carry this time exactly."""

    def __init__(self, late_s: dict[int, float]) -> None:
        self._now = 1000.0
        self._sleeps = 0
        self._late_s = late_s

    def now(self) -> float:
        return self._now

    def sleep_until(self, deadline: float) -> None:
        self._sleeps += 1
        self._now = max(self._now, deadline) + self._late_s.get(self._sleeps, 0.0)

    def sleep_past(self, deadline: float) -> None:
        self.sleep_until(deadline)


def assert_no_burst(times: list[float], profile: MotionProfile) -> None:
    """Every interval is one the ramp allows after the real one before it (a burst is not); one late
    by less than the re-plan threshold counts as the interval planned."""
    intervals = [b - a for a, b in itertools.pairwise(times)]
    assert min(intervals) >= 1 / profile.max_rate_sps * (1 - 1e-9)
    for i, (before, after) in enumerate(itertools.pairwise(intervals)):
        planned = before / (1 + profile.late_replan_intervals)
        shortest = shortest_interval_after(planned, profile.max_rate_sps, profile.accel_sps2)
        assert after >= shortest * (1 - 1e-9), (
            f"interval {i + 1}: {after * 1e6:.1f} us after {before * 1e6:.1f}"
        )
