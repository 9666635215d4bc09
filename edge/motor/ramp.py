"""Trapezoidal step timing (AccelStepper-style): accelerate, cruise at the max rate, decelerate to 0.

Per step of constant acceleration ``a`` the speed goes v -> v' with v'^2 = v^2 + 2a (one step of
distance), and the step takes 2 / (v + v'). The next speed is the least of: the max rate, what
acceleration allows, and what still lets the motor stop within the remaining steps. That one rule
gives the accelerate / cruise / decelerate shape and a controlled stop from any point.

A step that came late (the loop was descheduled, a write blocked) is not made up by firing the next
ones sooner: ``took()`` sets the speed to what the motor really did, and the ramp accelerates again
from there. Under constant acceleration the mean speed over a step is the speed at its middle, so a
step of ``d`` seconds ends at 1/d + a*d/2. A step longer than the first step from rest, sqrt(2/a),
is counted as that first step (the motor had stopped; the late pulse started it again), which ends
at sqrt(2a). Either way each interval is one the acceleration limit allows after the previous real
one, and none is shorter than 1/max_rate.
"""

from __future__ import annotations

import math


def speed_after(interval_s: float, accel_sps2: float) -> float:
    """The fastest a motor can be going at the end of a step that lasted ``interval_s``."""
    d = min(interval_s, math.sqrt(2 / accel_sps2))
    return 1 / d + accel_sps2 * d / 2


def shortest_interval_after(interval_s: float, max_rate_sps: float, accel_sps2: float) -> float:
    """The shortest next interval the ramp allows after a step of ``interval_s``."""
    v = min(max_rate_sps, speed_after(interval_s, accel_sps2))
    return 2 / (v + min(max_rate_sps, math.sqrt(v * v + 2 * accel_sps2)))


def steps_to_stop(speed_sps: float, accel_sps2: float) -> int:
    """Fewest steps in which a motor at ``speed_sps`` can come to rest."""
    return math.ceil(speed_sps * speed_sps / (2 * accel_sps2) - 1e-9)


class TrapezoidRamp:
    """Step intervals for a move of ``steps`` steps; ``stop()`` shortens it to the quickest halt."""

    def __init__(self, steps: int, max_rate_sps: float, accel_sps2: float) -> None:
        if steps < 0 or max_rate_sps <= 0 or accel_sps2 <= 0:
            raise ValueError("steps >= 0, max_rate_sps > 0 and accel_sps2 > 0 are required")
        self.max_rate_sps = max_rate_sps
        self.accel_sps2 = accel_sps2
        self.remaining = steps
        self.speed_sps = 0.0

    @property
    def done(self) -> bool:
        return self.remaining <= 0

    def steps_to_stop(self) -> int:
        """Fewest steps in which the motor can come to rest from its current speed."""
        return steps_to_stop(self.speed_sps, self.accel_sps2)

    def stop(self) -> None:
        """Decelerate now: only the steps needed to stop without losing position remain."""
        self.remaining = min(self.remaining, self.steps_to_stop())

    def took(self, interval_s: float) -> None:
        """The step just taken really lasted ``interval_s`` (at least what was planned): re-plan from it."""
        self.speed_sps = min(self.speed_sps, speed_after(interval_s, self.accel_sps2))

    def next_interval(self) -> float:
        """Seconds until the next step pulse; the move has one step fewer afterwards."""
        if self.remaining <= 0:
            raise StopIteration("the move is complete")
        self.remaining -= 1
        two_a = 2 * self.accel_sps2
        v = self.speed_sps
        v_next = min(self.max_rate_sps, math.sqrt(v * v + two_a), math.sqrt(two_a * self.remaining))
        self.speed_sps = v_next
        if v + v_next <= 0:
            # A single-step move: accelerate for half a step, decelerate for the other half.
            return 2 / math.sqrt(self.accel_sps2)
        return 2 / (v + v_next)
