"""Builds and owns everything the daemon runs besides the gateway: Redis buffer, drivers, controllers."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import redis
import structlog

from edge.buffer.connection import ThreadConnections
from edge.buffer.ledger import CommandLedger
from edge.buffer.outbox import Outbox
from edge.compat import tb_gateway
from edge.estop import EmergencyStop, contact_pin_factory, open_contact
from edge.motor.clock import Clock, MonotonicClock, ScaledClock
from edge.motor.controller import MotionProfile, MotorController
from edge.motor.driver import DRIVER_SPECS, StepperDriver, Wiring
from edge.motor.gpio_drivers import HalfStepDriver, StepDirDriver
from edge.motor.pins import PinBackend, PinFactory, load_pin_factory
from edge.motor.pulse_train import PulseTrain, PulseTrainStepDirDriver
from edge.motor.simulated import SimulatedDriver, SimulatedPulseTrain
from edge.settings import EdgeSettings, MotorSettings

log = structlog.get_logger(__name__)

# How long another thread may keep the GIL from a motor thread that wants it (sys.setswitchinterval).
GIL_SWITCH_INTERVAL_S = 0.0005


def build_driver(
    motor: MotorSettings, settings: EdgeSettings, factory: PinFactory | None, clock: Clock
) -> StepperDriver:
    if factory is None:
        record_dir = settings.simulation.record_dir
        record = record_dir / f"{motor.name}.steps" if record_dir is not None else None
        simulated = SimulatedDriver(clock, record_file=record)
        return SimulatedPulseTrain(simulated, clock) if settings.simulation.pulse_train else simulated
    pins = motor.pins
    if DRIVER_SPECS[motor.driver].wiring is Wiring.FOUR_WIRE:
        assert pins.coils is not None  # checked by the settings
        return HalfStepDriver(factory, coil_pins=pins.coils, invert_direction=motor.invert_direction)
    assert pins.step is not None
    assert pins.dir is not None
    chip = StepDirDriver(
        factory,
        step_pin=pins.step,
        dir_pin=pins.dir,
        enable_pin=pins.enable,
        step_high_s=motor.step_high_s,
        invert_direction=motor.invert_direction,
        enable_active_low=motor.enable_active_low,
    )
    # lgpio plays STEP pulses back from its own thread; the others are timed by the Python loop.
    return PulseTrainStepDirDriver(chip) if settings.gpio_backend is PinBackend.LGPIO else chip


class EdgeRuntime:
    def __init__(self, settings: EdgeSettings) -> None:
        self.settings = settings
        sim = settings.simulation
        self.clock: Clock = (
            ScaledClock(sim.time_scale) if sim.enabled and sim.time_scale != 1 else MonotonicClock()
        )
        # A configured hardware backend that cannot load raises PinBackendError here: no fallback.
        self._factory = None if sim.enabled else load_pin_factory(settings.gpio_backend)
        self.redis = redis.Redis.from_url(
            settings.redis_url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2
        )
        # One connection per thread for the calls each command makes, shared by ledger and outbox.
        self._connections = ThreadConnections(self.redis)
        self.outbox = Outbox(self.redis, connections=self._connections)
        self.ledger = CommandLedger(
            self.redis,
            dedupe_ttl_s=settings.limits.dedupe_ttl_s,
            max_queued_rounds=settings.limits.max_queued_rounds,
            progress_interval_s=settings.progress_interval_s,
            recent_done=settings.recent_done_in_heartbeat,
            on_outbox_write=self.outbox.notify,
            connections=self._connections,
        )
        self.controllers: dict[str, MotorController] = {}
        checkpoints = settings.checkpoint_policy
        for motor in settings.motors:
            profile = MotionProfile(
                motor.pulses_per_round,
                motor.max_step_rate_sps,
                motor.acceleration_sps2,
                motor.microstepping,
                settings.late_replan_full_steps,
            )
            driver = build_driver(motor, settings, self._factory, self.clock)
            self.controllers[motor.name] = MotorController(
                motor.name, driver, self.ledger, profile, self.clock, checkpoints=checkpoints
            )
        self.estop: EmergencyStop | None = None
        if settings.estop is not None:
            contact = open_contact(settings.estop, contact_pin_factory(sim.enabled))
            self.estop = EmergencyStop(contact, list(self.controllers.values()))
        self._gateway: Any = None
        self._closed = threading.Event()

    def start(self) -> None:
        # A motor thread woken for its next pulse waits for the GIL until the thread holding it
        # (the gateway's, the connector's) is made to drop it: 5 ms by default, many step intervals.
        # Pulse trains are queued TRAIN_AHEAD_S ahead of a timer outside Python and need no such
        # hurry; the shorter interval only makes every thread hand the GIL over more often.
        if any(not isinstance(c.driver, PulseTrain) for c in self.controllers.values()):
            sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        if self.estop is not None:
            self.estop.start()
        for controller in self.controllers.values():
            controller.start()
        log.info("motors running", motors=list(self.controllers), simulation=self.settings.simulation.enabled)

    def attach_gateway(self, gateway: Any) -> None:
        self._gateway = gateway

    def thingsboard_connected(self) -> bool:
        return tb_gateway.mqtt_client(self._gateway) is not None

    def buffer_available(self) -> bool:
        """The local Redis answers: without it no command is accepted, run or reported."""
        try:
            return bool(self.redis.ping())
        except (redis.RedisError, OSError):
            return False

    def holds(self) -> str:
        """What systemd's STATUS adds about stopped motors ('' when none is held): an operator
        at the Pi sees why nothing turns, and that a released button still waits for a resume."""
        notes = []
        if self.estop is not None and self.estop.engaged:
            notes.append("emergency stop pressed")
        held = [name for name, c in self.controllers.items() if c.hold_reason is not None]
        if held:
            notes.append(f"held until resumed: {', '.join(held)}")
        return "".join(f"; {note}" for note in notes)

    def motors_healthy(self, max_silence_s: float) -> bool:
        """Every motor loop is alive and has ticked recently (what the systemd watchdog checks).

        A loop that died of a driver fault counts as unhealthy too: systemd restarts the daemon,
        which retries the hardware, and StartLimitBurst stops it if the fault persists."""
        now = time.monotonic()
        return all(c.alive and now - c.last_beat < max_silence_s for c in self.controllers.values())

    def close(self) -> None:
        """Park every motor (decelerate, de-energise), then release pins and the Redis connection."""
        if self._closed.is_set():
            return
        self._closed.set()
        parkers = [threading.Thread(target=c.close) for c in self.controllers.values()]
        for t in parkers:
            t.start()
        for t in parkers:
            t.join()
        if self.estop is not None:
            self.estop.close()
        if self._factory is not None:
            self._factory.close()
        self._connections.close()
        self.redis.close()
        log.info("motors parked")
