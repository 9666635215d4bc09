"""The trapezoidal ramp as pure arithmetic: shape, symmetry, stop distance."""

from __future__ import annotations

import math

import pytest

from edge.motor.ramp import TrapezoidRamp, shortest_interval_after


def intervals(ramp: TrapezoidRamp) -> list[float]:
    out = []
    while not ramp.done:
        out.append(ramp.next_interval())
    return out


def test_long_move_accelerates_cruises_and_decelerates_symmetrically() -> None:
    rate, accel = 1000.0, 4000.0
    steps = intervals(TrapezoidRamp(2000, rate, accel))
    assert len(steps) == 2000
    ramp_steps = math.ceil(rate * rate / (2 * accel))  # 125
    assert steps[0] == pytest.approx(math.sqrt(2 / accel))
    assert steps[ramp_steps + 10 : -ramp_steps - 10] == pytest.approx(
        [1 / rate] * (2000 - 2 * ramp_steps - 20)
    )
    assert steps[:ramp_steps] == sorted(steps[:ramp_steps], reverse=True)  # strictly speeding up
    assert steps[-ramp_steps:] == pytest.approx(steps[:ramp_steps][::-1], rel=0.02)
    # Exact kinematics: n steps of constant acceleration from rest take sqrt(2n/a).
    assert sum(steps[:100]) == pytest.approx(math.sqrt(2 * 100 / accel), rel=1e-6)


def test_short_move_is_a_triangle_that_never_reaches_max_rate() -> None:
    steps = intervals(TrapezoidRamp(40, 1000.0, 4000.0))
    assert len(steps) == 40
    assert min(steps) > 1 / 1000.0
    assert steps == pytest.approx(steps[::-1], rel=0.05)


def test_stop_decelerates_within_the_stopping_distance() -> None:
    ramp = TrapezoidRamp(10_000, 1000.0, 4000.0)
    for _ in range(500):
        ramp.next_interval()
    assert ramp.speed_sps == pytest.approx(1000.0)
    ramp.stop()
    tail = intervals(ramp)
    assert len(tail) == 125
    assert tail == sorted(tail)  # slowing down each step
    assert ramp.speed_sps == 0.0


def test_single_step_and_bad_arguments() -> None:
    assert intervals(TrapezoidRamp(1, 100.0, 100.0)) == [pytest.approx(0.2)]
    assert intervals(TrapezoidRamp(0, 100.0, 100.0)) == []
    with pytest.raises(ValueError, match="max_rate_sps"):
        TrapezoidRamp(10, 0.0, 100.0)


def test_a_late_step_is_not_made_up_the_ramp_re_plans_from_the_real_interval() -> None:
    rate, accel = 1000.0, 4000.0
    ramp = TrapezoidRamp(2000, rate, accel)
    for _ in range(500):
        ramp.next_interval()
    assert ramp.speed_sps == pytest.approx(rate)
    ramp.took(0.005)  # planned 1 ms, the pulse came 4 ms late
    after = [ramp.next_interval() for _ in range(200)]
    # Slower than the cruise at once, then accelerating back at the limit, never under 1/rate.
    assert after[0] == pytest.approx(shortest_interval_after(0.005, rate, accel))
    assert after[0] > 2 / rate
    previous = 0.005
    for interval in after:
        assert interval >= shortest_interval_after(previous, rate, accel) * (1 - 1e-9)
        assert interval >= 1 / rate * (1 - 1e-12)
        previous = interval
    assert after == sorted(after, reverse=True)
    assert after[-1] == pytest.approx(1 / rate)


def test_a_pause_longer_than_a_start_from_rest_restarts_as_from_rest() -> None:
    accel = 4000.0
    ramp = TrapezoidRamp(2000, 1000.0, accel)
    for _ in range(500):
        ramp.next_interval()
    ramp.took(0.5)
    # As if the late pulse had been the first step from rest: the next is the second such step.
    assert ramp.next_interval() == pytest.approx((2**0.5 - 1) * math.sqrt(2 / accel))
    # A step taken as planned (or early, which the controller never does) does not speed it up.
    speed = ramp.speed_sps
    ramp.took(1e-6)
    assert ramp.speed_sps == speed
