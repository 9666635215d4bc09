"""The Pi's emergency stop: a normally closed button on a GPIO input, read through gpiozero.

Normally closed: the contact is closed while all is well, so the button pressed (contact open), a
cut wire and an unplugged connector all read the same: engaged. Nothing wired reads engaged too,
which is why the simulation, with no button, starts engaged when one is configured.

Engaged stops every motor at once, without the cloud and without the local Redis (the path from the
pin to the step loops is memory only): each decelerates at its configured acceleration to rest,
then its coils are released, a controlled stop and then power off (what IEC 60204-1 calls stop
category 1). Cutting the pulses at speed instead is no quicker stop for a stepper: the wheel's
inertia carries the rotor past a field that no longer turns, it slips, and the wheel coasts on
uncounted, so the ledger no longer knows how far the command got and a resume could not turn exactly
the remainder. The ramp is the quickest stop the motor can follow while keeping step (max rate /
acceleration seconds at most, 0.1 s for 2,000 steps/s at 20,000 steps/s^2).

This is a stop by software and needs the Pi running; a stop that must hold when it hangs is a second
pole of the same button cutting the drivers' power in hardware, which this input then reports and
latches. Releasing the button lifts nothing: each motor stays held (stored in the ledger, so a
restarted daemon starts held) until the cloud's resume RPC.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

import structlog

from edge.buffer.ledger import retry_until_available
from edge.errors import PinBackendError
from edge.motor.controller import MotorController
from edge.settings import EStopSettings
from giftwheel.contracts.motor import EStopInput

log = structlog.get_logger(__name__)


def contact_pin_factory(simulated: bool) -> Any:
    """gpiozero's pin factory for the button: a mock pin in simulation (nothing wired: it reads open),
    lgpio on a Pi."""
    if simulated:
        from gpiozero.pins.mock import MockFactory

        return MockFactory()
    from edge.motor.backends.gpiozero_pins import create_factory

    return create_factory().pin_factory


def open_contact(settings: EStopSettings, pin_factory: Any) -> Any:
    """The button's input, active while the normally closed contact is closed."""
    from gpiozero import DigitalInputDevice

    try:
        return DigitalInputDevice(
            settings.pin,
            pull_up=settings.pull_up,
            bounce_time=settings.bounce_ms / 1000 or None,
            pin_factory=pin_factory,
        )
    except Exception as exc:  # each pin library has its own exception types for this
        raise PinBackendError(
            f"estop.pin: GPIO{settings.pin} cannot be claimed as an input: {exc} "
            "(is another process using it? `gpioinfo` names the holder)"
        ) from exc


class EmergencyStop:
    """Holds every motor when the contact opens; reports each change of the button from its own
    thread, so a slow or missing local Redis never delays a stop."""

    def __init__(self, contact: Any, controllers: Sequence[MotorController]) -> None:
        self._contact = contact
        self._controllers = controllers
        self._changed = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._report, name="estop", daemon=True)

    @property
    def engaged(self) -> bool:
        return not self._contact.is_active

    def start(self) -> None:
        """Before the motors start: a button open at start-up holds them before their first step."""
        self._contact.when_activated = self._changed_state
        self._contact.when_deactivated = self._changed_state
        self._changed_state()
        self._thread.start()

    def close(self) -> None:
        self._closed.set()
        self._changed.set()
        self._thread.join(5)
        self._contact.close()

    def _changed_state(self) -> None:
        engaged = self.engaged  # read again: an edge callback may come late, the level is the truth
        for controller in self._controllers:
            controller.set_estop(engaged)
        self._changed.set()
        if engaged:
            log.warning("emergency stop engaged: every motor held")
        else:
            log.info("emergency stop released: held motors wait for a resume")

    def _report(self) -> None:
        while True:
            self._changed.wait()
            if self._closed.is_set():
                return
            self._changed.clear()
            reading = EStopInput.ENGAGED if self.engaged else EStopInput.RELEASED
            for controller in self._controllers:
                retry_until_available(
                    functools.partial(controller.report_estop, reading), should_stop=self._closed.is_set
                )
