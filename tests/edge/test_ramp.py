"""The trapezoidal ramp as pure arithmetic: shape, symmetry, stop distance."""

from __future__ import annotations

import math

import pytest

from edge.motor.ramp import TrapezoidRamp


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
