"""The StepperDriver protocol and the driver families behind it, described as data."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class StepperDriver(Protocol):
    """Everything that moves a motor goes through one of these, owned by one controller."""

    def energise(self) -> None:
        """Power the coils (holding torque) before a move."""
        ...

    def release(self) -> None:
        """De-energise the coils: an idle motor must not sit hot."""
        ...

    def set_forward(self, forward: bool) -> None: ...

    def step(self) -> None:
        """One (micro)step in the current direction."""
        ...

    def close(self) -> None:
        """Release the coils and free the pins."""
        ...


class DriverType(StrEnum):
    A4988 = "a4988"
    DRV8825 = "drv8825"
    TMC2209 = "tmc2209"
    ULN2003 = "uln2003"  # 28BYJ-48 unipolar, four coil pins, half-step sequence


class Wiring(StrEnum):
    STEP_DIR = "step_dir"
    FOUR_WIRE = "four_wire"


@dataclass(frozen=True)
class DriverSpec:
    wiring: Wiring
    max_microstepping: int
    max_step_rate_sps: float  # the chip's STEP input limit; Python's own loop is far slower


# Datasheet limits (research/domain.md s.3.1). ULN2003 "microstepping" 2 means half-step.
DRIVER_SPECS: dict[DriverType, DriverSpec] = {
    DriverType.A4988: DriverSpec(Wiring.STEP_DIR, 16, 500_000),
    DriverType.DRV8825: DriverSpec(Wiring.STEP_DIR, 32, 250_000),
    DriverType.TMC2209: DriverSpec(Wiring.STEP_DIR, 256, 2_000_000),
    DriverType.ULN2003: DriverSpec(Wiring.FOUR_WIRE, 2, 2_000),
}
