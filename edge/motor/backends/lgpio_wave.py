"""lgpio pins with hardware-timed step trains: each output is claimed as a group of one, so its
STEP pulses can be queued with tx_wave and played back by lgpio's own C thread (lgpio 0.2.2,
lgpio.py: group_claim_output, group_write, pulse, tx_wave and tx_room with TX_WAVE)."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from types import ModuleType
from typing import Any

from edge.motor.pins import PinBackend, backend_error

BIT = 1  # bit 0 of a group is its leader: here the pin itself
# lgpio.GROUP_ALL: write every GPIO of the group.
GROUP_ALL = 0xFFFFFFFFFFFFFFFF


def import_lgpio() -> ModuleType:
    # Imported only when configured; tests patch this function (the hardware boundary).
    return importlib.import_module("lgpio")


class LgpioPin:
    def __init__(self, lgpio: Any, handle: int, bcm_pin: int) -> None:
        self._lgpio = lgpio
        self._handle = handle
        self.bcm_pin = bcm_pin
        lgpio.group_claim_output(handle, [bcm_pin], [0])

    def on(self) -> None:
        self._lgpio.group_write(self._handle, self.bcm_pin, BIT, GROUP_ALL)

    def off(self) -> None:
        self._lgpio.group_write(self._handle, self.bcm_pin, 0, GROUP_ALL)

    def send_wave(self, steps: Sequence[tuple[int, int]]) -> None:
        pulses = [self._lgpio.pulse(BIT if level else 0, BIT, micros) for level, micros in steps]
        self._lgpio.tx_wave(self._handle, self.bcm_pin, pulses)

    def wave_room(self) -> int:
        return int(self._lgpio.tx_room(self._handle, self.bcm_pin, self._lgpio.TX_WAVE))

    def close(self, *, keep_level: bool = False) -> None:
        if not keep_level:
            self._lgpio.group_free(self._handle, self.bcm_pin)


class LgpioFactory:
    def __init__(self, lgpio: Any, chip: int = 0) -> None:
        self._lgpio = lgpio
        self._handle = lgpio.gpiochip_open(chip)

    def output(self, bcm_pin: int) -> LgpioPin:
        return LgpioPin(self._lgpio, self._handle, bcm_pin)

    def close(self) -> None:
        self._lgpio.gpiochip_close(self._handle)


def create_factory() -> LgpioFactory:
    try:
        return LgpioFactory(import_lgpio())
    except Exception as exc:  # ImportError, or lgpio.error / OSError without /dev/gpiochip0
        raise backend_error(
            PinBackend.LGPIO, exc, "lgpio needs /dev/gpiochip0 (a Raspberry Pi; the Pi 5 included)."
        ) from exc
