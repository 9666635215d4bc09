"""The small pin interface drivers use, and the explicit choice of GPIO backend (no fallback chain)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
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


# Each backend is its own module so a hardware library is only imported when it is configured.
_BACKEND_MODULES = {
    PinBackend.RPI_GPIO: "edge.motor.backends.rpi_gpio",
    PinBackend.GPIOZERO: "edge.motor.backends.gpiozero_pins",
}


def load_pin_factory(backend: PinBackend) -> PinFactory:
    """The configured backend's factory, or a PinBackendError that says why it cannot load here."""
    module = importlib.import_module(_BACKEND_MODULES[backend])
    create: Callable[[], PinFactory] = module.create_factory
    return create()


def backend_error(backend: PinBackend, exc: BaseException, hint: str) -> PinBackendError:
    return PinBackendError(f"GPIO backend {backend.value!r} cannot load on this machine: {exc!r}. {hint}")
