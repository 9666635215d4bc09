"""RPi.GPIO pins (Raspberry Pi 4 and older; RPi.GPIO does not work on a Pi 5)."""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from edge.motor.pins import PinBackend, backend_error


def import_gpio() -> ModuleType:
    # RPi.GPIO raises RuntimeError (not ImportError) when imported off a Pi; tests patch this function.
    return importlib.import_module("RPi.GPIO")


class RpiGpioPin:
    def __init__(self, gpio: Any, bcm_pin: int) -> None:
        self._gpio = gpio
        self.bcm_pin = bcm_pin
        gpio.setup(bcm_pin, gpio.OUT, initial=gpio.LOW)

    def on(self) -> None:
        self._gpio.output(self.bcm_pin, self._gpio.HIGH)

    def off(self) -> None:
        self._gpio.output(self.bcm_pin, self._gpio.LOW)

    def close(self, *, keep_level: bool = False) -> None:
        if not keep_level:
            self._gpio.cleanup(self.bcm_pin)


class RpiGpioFactory:
    def __init__(self, gpio: Any) -> None:
        self._gpio = gpio
        gpio.setwarnings(False)
        gpio.setmode(gpio.BCM)

    def output(self, bcm_pin: int) -> RpiGpioPin:
        return RpiGpioPin(self._gpio, bcm_pin)

    def close(self) -> None:
        """Pins release themselves; nothing shared to free."""


def create_factory() -> RpiGpioFactory:
    try:
        gpio = import_gpio()
    except (ImportError, RuntimeError) as exc:
        raise backend_error(
            PinBackend.RPI_GPIO, exc, "RPi.GPIO needs a Pi 4 or older; on a Pi 5 use 'gpiozero'."
        ) from exc
    return RpiGpioFactory(gpio)
