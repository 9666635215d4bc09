"""gpiozero pins over lgpio, chosen explicitly: gpiozero's own default is a silent fallback chain."""

from __future__ import annotations

from typing import Any

from edge.motor.pins import PinBackend, backend_error


def lgpio_factory() -> Any:
    from gpiozero.pins.lgpio import LGPIOFactory

    return LGPIOFactory()


class GpiozeroPin:
    def __init__(self, device: Any) -> None:
        self._device = device

    def on(self) -> None:
        self._device.on()

    def off(self) -> None:
        self._device.off()

    def close(self, *, keep_level: bool = False) -> None:
        if not keep_level:
            self._device.close()


class GpiozeroFactory:
    """Wraps any gpiozero pin factory; tests pass gpiozero's MockFactory."""

    def __init__(self, pin_factory: Any) -> None:
        self.pin_factory = pin_factory

    def output(self, bcm_pin: int) -> GpiozeroPin:
        from gpiozero import DigitalOutputDevice

        return GpiozeroPin(DigitalOutputDevice(bcm_pin, initial_value=False, pin_factory=self.pin_factory))

    def close(self) -> None:
        self.pin_factory.close()


def create_factory() -> GpiozeroFactory:
    try:
        return GpiozeroFactory(lgpio_factory())
    except Exception as exc:  # lgpio raises ImportError, OSError or its own error off a Pi
        raise backend_error(
            PinBackend.GPIOZERO, exc, "gpiozero needs lgpio and /dev/gpiochip* (a Raspberry Pi)."
        ) from exc
