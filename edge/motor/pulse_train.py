"""Hardware-timed step pulses: the Python loop plans segments of the ramp, a timer thread outside
Python (lgpio's, in C) emits them, so a descheduled interpreter or a slow write shifts no pulse."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from edge.errors import PinBackendError
from edge.motor.gpio_drivers import StepDirDriver

# How far ahead the Python loop keeps the train queued: a stop or park starts decelerating at most
# this late, and the interpreter may be descheduled this long before the train runs dry.
TRAIN_AHEAD_S = 0.05
# One queued segment: enough pulses for this long (at least one), so a slow ramp is not one call
# per pulse and a fast one is not a huge wave.
TRAIN_SEGMENT_S = 0.01
# A segment's pulses count as turned this long after their planned end (its start may wait a little
# for lgpio's thread): progress is never written before the pulses it counts.
TRAIN_COUNT_MARGIN_S = 0.005


@runtime_checkable
class WavePin(Protocol):
    """An output pin whose level changes a timer outside Python plays back (lgpio's tx_wave)."""

    def send_wave(self, steps: Sequence[tuple[int, int]]) -> None:
        """Queue (level, microseconds to hold it) pairs after what is queued already."""
        ...

    def wave_room(self) -> int:
        """How many more send_wave calls the queue takes now."""
        ...


@runtime_checkable
class PulseTrain(Protocol):
    """A driver that takes whole segments of step intervals instead of one step() per pulse."""

    def send(self, intervals_s: Sequence[float]) -> float:
        """Queue one pulse per interval, each rising edge ``interval`` after the previous one;
        returns how long the queued segment plays."""
        ...

    def room(self) -> int: ...


def wave_for(intervals_s: Sequence[float], high_us: int) -> list[tuple[int, int]]:
    """Low then high for each interval, so rising edges sit exactly one interval apart; intervals
    round up to the microsecond, never down (a pulse is never earlier than the ramp planned)."""
    out: list[tuple[int, int]] = []
    for interval in intervals_s:
        total_us = max(math.ceil(interval * 1e6 - 1e-6), 2 * high_us)
        out.append((0, total_us - high_us))
        out.append((1, high_us))
    return out


class PulseTrainStepDirDriver:
    """A step/dir chip whose STEP line the backend's timer plays back (PulseTrain); DIR and EN as
    the chip's own driver sets them."""

    def __init__(self, chip: StepDirDriver) -> None:
        if not isinstance(chip.step_output, WavePin):
            raise PinBackendError("the STEP pin's GPIO backend cannot time pulse trains")
        self._chip = chip
        self._wave: WavePin = chip.step_output
        # lgpio times waves to the microsecond: at least 1 us, and never below the chip's minimum.
        self._high_us = max(1, math.ceil(chip.step_high_s * 1e6 - 1e-9))

    def energise(self) -> None:
        self._chip.energise()

    def release(self) -> None:
        self._chip.release()

    def set_forward(self, forward: bool) -> None:
        self._chip.set_forward(forward)

    def step(self) -> None:
        self._chip.step()

    def close(self) -> None:
        self._chip.close()

    def send(self, intervals_s: Sequence[float]) -> float:
        wave = wave_for(intervals_s, self._high_us)
        self._wave.send_wave(wave)
        return sum(micros for _, micros in wave) / 1e6

    def room(self) -> int:
        return self._wave.wave_room()
