"""The small pin interface drivers use, and the explicit choice of GPIO backend (no fallback chain)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from edge.errors import PinBackendError


class OutputPin(Protocol):
    def on(self) -> None: ...

    def off(self) -> None: ...

    def close(self, *, keep_level: bool = False) -> None:
        """Free the pin; ``keep_level`` leaves it driven as it is (an EN line must not float)."""
        ...


class PinFactory(Protocol):
    def output(self, bcm_pin: int) -> OutputPin:
        """Claim ``bcm_pin`` as an output, driven low."""
        ...

    def close(self) -> None: ...


class PinBackend(StrEnum):
    RPI_GPIO = "rpi_gpio"  # Pi 4 and older, with the rpi-gpio extra (compiled on the Pi)
    GPIOZERO = "gpiozero"  # gpiozero over lgpio: the only one that works on a Pi 5
    LGPIO = "lgpio"  # lgpio itself, STEP pulses timed by its C thread (tx_wave): any Pi, the Pi 5 too


@dataclass(frozen=True)
class BackendSpec:
    module: str  # its own module, so a hardware library is only imported when it is configured
    # The fastest step rate per motor this backend produces honestly. rpi_gpio and gpiozero time
    # steps in Python (one write per edge, a sleep and a short spin to each deadline, counted from
    # the real previous pulse): docs/benchmarks.md measures
    # ~10 % of an x86 core at 3,200 steps/s, a Pi 4 core is 3-4x slower for this code, so 5,000
    # steps/s is about half a Pi 4 core per motor, and the kernel's sleep jitter (~0.1-1 ms) is
    # already several step intervals there. A config asking for more is refused, not half served.
    max_step_rate_sps: float


BACKENDS: dict[PinBackend, BackendSpec] = {
    PinBackend.RPI_GPIO: BackendSpec("edge.motor.backends.rpi_gpio", 5_000),
    PinBackend.GPIOZERO: BackendSpec("edge.motor.backends.gpiozero_pins", 5_000),
    # Pulses timed by lgpio's thread, not Python: the interpreter only plans ramp segments ahead.
    # Its waves are timed in whole microseconds, and 20,000 steps/s keeps each 50 us interval
    # well above that and above the STEP high times of the chips we support.
    PinBackend.LGPIO: BackendSpec("edge.motor.backends.lgpio_wave", 20_000),
}


class NamedClaims:
    """A factory whose failed claim is a PinBackendError naming the pin, not the library's traceback:
    a pin another process holds (lgpio's "GPIO busy", gpiozero's GPIOPinInUse) cannot be fixed by a
    restart, so the daemon exits with one line and the code that stops systemd's restarts."""

    def __init__(self, factory: PinFactory, backend: PinBackend) -> None:
        self._factory = factory
        self._backend = backend

    def output(self, bcm_pin: int) -> OutputPin:
        try:
            return self._factory.output(bcm_pin)
        except Exception as exc:  # each library has its own exception types for this
            raise PinBackendError(
                f"GPIO{bcm_pin} cannot be claimed with {self._backend.value}: {exc} "
                "(is another process using it? `gpioinfo` names the holder)"
            ) from exc

    def close(self) -> None:
        self._factory.close()


def load_pin_factory(backend: PinBackend) -> PinFactory:
    """The configured backend's factory, or a PinBackendError that says why it cannot load here."""
    module = importlib.import_module(BACKENDS[backend].module)
    create: Callable[[], PinFactory] = module.create_factory
    return NamedClaims(create(), backend)


def backend_error(backend: PinBackend, exc: BaseException, hint: str) -> PinBackendError:
    return PinBackendError(f"GPIO backend {backend.value!r} cannot load on this machine: {exc!r}. {hint}")
