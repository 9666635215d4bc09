"""Drivers with no hardware: record every step with its timestamp, optionally to a durable file."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Sequence
from pathlib import Path

from edge.motor.clock import Clock


class SimulatedDriver:
    """``steps`` holds (time, +1/-1) on the controller's clock; ``record_file`` survives kill -9.

    The file gets one ``<time> <+1|-1>`` line per step through an O_APPEND descriptor, so each step is
    in the kernel before step() returns, and tests can count what a killed daemon really turned.
    """

    def __init__(self, clock: Clock, *, record_file: Path | None = None, keep_last: int = 1_000_000) -> None:
        self._clock = clock
        self.steps: deque[tuple[float, int]] = deque(maxlen=keep_last)
        self.net_steps = 0
        self.total_steps = 0
        self.energised = False
        self._direction = 1
        self._fd: int | None = None
        if record_file is not None:
            record_file.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(record_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def energise(self) -> None:
        self.energised = True

    def release(self) -> None:
        self.energised = False

    def set_forward(self, forward: bool) -> None:
        self._direction = 1 if forward else -1

    def step(self) -> None:
        self.record((self._clock.now(),))

    def record(self, times: Sequence[float]) -> None:
        """Steps in the current direction at ``times``, written with one call."""
        direction = self._direction
        self.steps.extend((t, direction) for t in times)
        self.net_steps += direction * len(times)
        self.total_steps += len(times)
        if self._fd is not None:
            os.write(self._fd, "".join(f"{t:.6f} {direction:+d}\n" for t in times).encode())

    def close(self) -> None:
        self.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class SimulatedPulseTrain:
    """The simulated driver taking whole segments (edge.motor.pulse_train.PulseTrain), as the lgpio
    backend does: one Python call per segment instead of one per pulse, so a simulated daemon costs
    what a Pi whose pulses lgpio's C thread plays pays. A segment plays after the one queued before
    it, or at once if the train ran dry; its pulses are recorded with those planned times when it is
    queued, so after a kill -9 the record may hold pulses of the last TRAIN_AHEAD_S that a Pi's
    train (which dies with the process) would not have played."""

    def __init__(self, driver: SimulatedDriver, clock: Clock) -> None:
        self.driver = driver
        self._clock = clock
        self._queued_until = clock.now()

    def energise(self) -> None:
        self.driver.energise()

    def release(self) -> None:
        self.driver.release()

    def set_forward(self, forward: bool) -> None:
        self.driver.set_forward(forward)

    def step(self) -> None:
        self.driver.step()

    def close(self) -> None:
        self.driver.close()

    def send(self, intervals_s: Sequence[float]) -> float:
        at = max(self._queued_until, self._clock.now())
        times = []
        for interval in intervals_s:
            at += interval
            times.append(at)
        self.driver.record(times)
        self._queued_until = at
        return sum(intervals_s)

    def room(self) -> int:
        return 1  # no queue to fill: the controller keeps only TRAIN_AHEAD_S queued anyway
