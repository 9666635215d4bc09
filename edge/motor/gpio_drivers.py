"""Drivers on real pins: step/dir/enable chips (A4988, DRV8825, TMC2209) and 4-wire half-step."""

from __future__ import annotations

import time
from collections.abc import Sequence

from edge.motor.pins import OutputPin, PinFactory

# Half-step sequence A, AB, B, BC, C, CD, D, DA over coils IN1..IN4 (28BYJ-48 on a ULN2003).
HALF_STEP_SEQUENCE: tuple[tuple[int, int, int, int], ...] = (
    (1, 0, 0, 0),
    (1, 1, 0, 0),
    (0, 1, 0, 0),
    (0, 1, 1, 0),
    (0, 0, 1, 0),
    (0, 0, 1, 1),
    (0, 0, 0, 1),
    (1, 0, 0, 1),
)


class StepDirDriver:
    """A STEP pulse per microstep; DIR level picks the direction; EN (active low on these chips)."""

    def __init__(
        self,
        factory: PinFactory,
        *,
        step_pin: int,
        dir_pin: int,
        enable_pin: int | None,
        step_high_s: float,
        invert_direction: bool = False,
        enable_active_low: bool = True,
    ) -> None:
        self._step_high_ns = round(step_high_s * 1e9)
        self._step = factory.output(step_pin)
        self._dir = factory.output(dir_pin)
        self._enable = factory.output(enable_pin) if enable_pin is not None else None
        self._invert = invert_direction
        self._enable_active_low = enable_active_low
        self.release()

    @property
    def step_output(self) -> OutputPin:
        return self._step

    @property
    def step_high_s(self) -> float:
        return self._step_high_ns / 1e9

    def energise(self) -> None:
        self._set_enable(True)

    def release(self) -> None:
        self._set_enable(False)

    def _set_enable(self, enabled: bool) -> None:
        if self._enable is None:
            return  # EN tied on the board: the coils stay powered, documented in the example config
        if enabled != self._enable_active_low:
            self._enable.on()
        else:
            self._enable.off()

    def set_forward(self, forward: bool) -> None:
        if forward != self._invert:
            self._dir.on()
        else:
            self._dir.off()

    def step(self) -> None:
        self._step.on()
        # Held for the chip's minimum high time on purpose, not left to call overhead: a fast backend
        # returns from on() in well under the 1-1.9 us an A4988 or DRV8825 needs, and a shorter
        # pulse is not counted. A microsecond or two is below any sleep's resolution: spin.
        deadline = time.perf_counter_ns() + self._step_high_ns
        while time.perf_counter_ns() < deadline:
            pass
        self._step.off()

    def close(self) -> None:
        self.release()
        self._step.close()
        self._dir.close()
        if self._enable is not None:
            # Released, EN would float and the driver boards' pull-down would power the coils again.
            self._enable.close(keep_level=True)


class HalfStepDriver:
    """Four coil pins walked through the 8-phase half-step sequence; release() drops all four."""

    def __init__(
        self, factory: PinFactory, *, coil_pins: Sequence[int], invert_direction: bool = False
    ) -> None:
        if len(coil_pins) != 4:
            raise ValueError("a 4-wire unipolar driver needs exactly four coil pins")
        self._coils = [factory.output(pin) for pin in coil_pins]
        self._levels = [0, 0, 0, 0]
        self._phase = 0
        self._delta = 1
        self._invert = invert_direction

    def _write(self, levels: Sequence[int]) -> None:
        for coil, old, new in zip(self._coils, self._levels, levels, strict=True):
            if new != old:
                if new:
                    coil.on()
                else:
                    coil.off()
        self._levels = list(levels)

    def energise(self) -> None:
        self._write(HALF_STEP_SEQUENCE[self._phase])

    def release(self) -> None:
        self._write((0, 0, 0, 0))

    def set_forward(self, forward: bool) -> None:
        self._delta = 1 if forward != self._invert else -1

    def step(self) -> None:
        self._phase = (self._phase + self._delta) % len(HALF_STEP_SEQUENCE)
        self._write(HALF_STEP_SEQUENCE[self._phase])

    def close(self) -> None:
        self.release()
        for coil in self._coils:
            coil.close()
