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
    microsteps: tuple[int, ...]  # the step divisions the chip can select (1: full step)
    max_step_rate_sps: float  # the chip's STEP input limit; the GPIO backend's own is far lower
    min_step_high_s: float  # how long STEP must stay high to count as a pulse (0: no STEP input)


_POWERS_OF_TWO_TO_256 = tuple(2**n for n in range(9))

# From the manufacturers' datasheets. ULN2003 "microstepping" 2 means the half-step sequence.
DRIVER_SPECS: dict[DriverType, DriverSpec] = {
    # Allegro A4988 datasheet: Table 1 (MS1-MS3: full to 1/16 step); Figure 1 "Logic Interface
    # Timing": STEP minimum high pulse width tA 1 us, minimum low pulse width tB 1 us (so 500 kHz).
    DriverType.A4988: DriverSpec(Wiring.STEP_DIR, (1, 2, 4, 8, 16), 500_000, 1e-6),
    # TI DRV8825 datasheet (SLVSA73): MODE0-MODE2 full to 1/32 step; Timing Requirements: fSTEP
    # 250 kHz, tWH(STEP) pulse duration STEP high 1.9 us.
    DriverType.DRV8825: DriverSpec(Wiring.STEP_DIR, (1, 2, 4, 8, 16, 32), 250_000, 1.9e-6),
    # Trinamic TMC2209 datasheet (Rev. 1.09): MRES over UART selects full step to 1/256 (the MS1/MS2
    # pins alone give 8, 16, 32, 64); STEP input high time tSH min max(tFILTSD, tCLK + 20 ns),
    # ~100 ns at the internal 12 MHz clock.
    DriverType.TMC2209: DriverSpec(Wiring.STEP_DIR, _POWERS_OF_TWO_TO_256, 2_000_000, 100e-9),
    DriverType.ULN2003: DriverSpec(Wiring.FOUR_WIRE, (2,), 2_000, 0.0),
}
