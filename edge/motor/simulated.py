"""A driver with no hardware: records every step with its timestamp, optionally to a durable file."""

from __future__ import annotations

import os
from collections import deque
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
        now = self._clock.now()
        self.steps.append((now, self._direction))
        self.net_steps += self._direction
        self.total_steps += 1
        if self._fd is not None:
            os.write(self._fd, f"{now:.6f} {self._direction:+d}\n".encode())

    def close(self) -> None:
        self.release()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
