"""The lgpio backend's hardware-timed pulse trains, with lgpio replaced at its module boundary."""

from __future__ import annotations

import itertools
import random
import statistics
from pathlib import Path
from typing import Any

import pytest
from pytest_mock import MockerFixture

from devstack.edge_process import recorded_steps, simulated_config
from devstack.waiting import wait_until
from edge.buffer.ledger import CommandLedger
from edge.errors import PinBackendError
from edge.motor.backends.gpiozero_pins import GpiozeroFactory
from edge.motor.clock import ScaledClock
from edge.motor.controller import MotionProfile, MotorController
from edge.motor.gpio_drivers import StepDirDriver
from edge.motor.pins import PinBackend, load_pin_factory
from edge.motor.pulse_train import PulseTrain, PulseTrainStepDirDriver
from edge.motor.simulated import SimulatedPulseTrain
from edge.runtime import build_driver
from edge.settings import parse_settings
from tests.edge.motion import JumpyClock, assert_no_burst

STEP, DIR, EN = 17, 27, 22


class FakeLgpio:
    """The part of the lgpio module the backend calls (names and signatures of lgpio 0.2.2). Waves
    play back as lgpio's thread plays them: each after the one before, or at once if the queue
    ran dry; every level change is recorded with its time on the controller's clock."""

    TX_WAVE = 1

    class pulse:  # noqa: N801 - lgpio's own name
        def __init__(self, group_bits: int, group_mask: int, pulse_delay: int) -> None:
            self.group_bits = group_bits
            self.group_mask = group_mask
            self.pulse_delay = pulse_delay

    def __init__(self, clock: JumpyClock) -> None:
        self.clock = clock
        self.levels: dict[int, int] = {}
        self.events: list[tuple[float, int, int]] = []  # (time, gpio, level)
        self.played_until = 0.0

    def gpiochip_open(self, chip: int) -> int:
        return 3

    def gpiochip_close(self, handle: int) -> None:
        pass

    def group_claim_output(self, handle: int, gpio: list[int], levels: list[int]) -> int:
        self.levels[gpio[0]] = levels[0]
        return 0

    def group_free(self, handle: int, gpio: int) -> int:
        return 0

    def group_write(self, handle: int, gpio: int, group_bits: int, group_mask: int) -> int:
        self.levels[gpio] = group_bits & 1
        self.events.append((self.clock.now(), gpio, group_bits & 1))
        return 0

    def tx_room(self, handle: int, gpio: int, kind: int) -> int:
        assert kind == self.TX_WAVE
        return 8

    def tx_wave(self, handle: int, gpio: int, pulses: list[Any]) -> int:
        t = max(self.clock.now(), self.played_until)
        for p in pulses:
            assert p.group_mask == 1
            self.events.append((t, gpio, p.group_bits & 1))
            t += p.pulse_delay / 1e6
        self.played_until = t
        return 7


@pytest.fixture
def lgpio(mocker: MockerFixture) -> FakeLgpio:
    rng = random.Random(19)
    # 1 in 30 of the loop's sleeps overruns by up to 120 ms: longer than the train is queued ahead.
    clock = JumpyClock({n: rng.uniform(1e-4, 0.12) for n in range(1, 20_000) if rng.random() < 1 / 30})
    fake = FakeLgpio(clock)
    mocker.patch("edge.motor.backends.lgpio_wave.import_lgpio", return_value=fake)
    return fake


def rising_edges(fake: FakeLgpio, gpio: int) -> list[float]:
    edges = []
    level = 0
    for t, pin, new in fake.events:
        if pin == gpio:
            if new and not level:
                edges.append(t)
            level = new
    return edges


def test_lgpio_train_turns_exactly_and_never_bursts_when_the_loop_is_late(
    lgpio: FakeLgpio, ledger: CommandLedger
) -> None:
    factory = load_pin_factory(PinBackend.LGPIO)
    driver = PulseTrainStepDirDriver(
        StepDirDriver(factory, step_pin=STEP, dir_pin=DIR, enable_pin=EN, step_high_s=1.9e-6)
    )
    profile = MotionProfile(
        steps_per_round=3200, max_rate_sps=20_000.0, accel_sps2=200_000.0, microstepping=16
    )
    ledger.submit("m1", "c-0000e001", 4, None)
    motor = MotorController("m1", driver, ledger, profile, lgpio.clock, idle_poll_s=0.05)
    motor.start()
    wait_until(lambda: ledger.status("m1").commands_done == 1)
    motor.close()
    edges = rising_edges(lgpio, STEP)
    assert len(edges) == 4 * 3200
    assert_no_burst(edges, profile)
    # Full speed reached: 50 us intervals, as lgpio times them (whole microseconds, never shorter).
    assert min(b - a for a, b in itertools.pairwise(edges)) == pytest.approx(50e-6)
    # STEP held high 2 us (the DRV8825's 1.9 rounded up), DIR and EN set before the first pulse,
    # EN released (high: active low) after the last.
    step = [(t, v) for t, pin, v in lgpio.events if pin == STEP]
    highs = [b[0] - a[0] for a, b in itertools.pairwise(step) if a[1] == 1 and b[1] == 0]
    assert min(highs) == pytest.approx(2e-6)
    first, last = edges[0], edges[-1]
    assert [v for t, pin, v in lgpio.events if pin == DIR and t <= first][-1] == 1
    assert [v for t, pin, v in lgpio.events if pin == EN and t <= first][-1] == 0
    assert {v for t, pin, v in lgpio.events if pin == EN and t > last} == {1}
    assert ledger.status("m1").rounds_completed == 4


def test_pulse_train_driver_refuses_a_backend_without_one(mocker: MockerFixture) -> None:
    from gpiozero.pins.mock import MockFactory

    chip = StepDirDriver(
        GpiozeroFactory(MockFactory()), step_pin=STEP, dir_pin=DIR, enable_pin=EN, step_high_s=1e-6
    )
    with pytest.raises(PinBackendError, match="the STEP pin's GPIO backend cannot time pulse trains"):
        PulseTrainStepDirDriver(chip)


def test_the_lgpio_backend_gives_step_dir_chips_a_pulse_train(lgpio: FakeLgpio, tmp_path: Path) -> None:
    config = simulated_config(
        tmp_path, "redis://127.0.0.1:1/0", 1883, gpio_backend="lgpio", simulation={"enabled": False}
    )
    settings = parse_settings(config)
    factory = load_pin_factory(settings.gpio_backend)
    step_dir = build_driver(settings.motors[0], settings, factory, lgpio.clock)
    assert isinstance(step_dir, PulseTrain)
    four_wire = build_driver(settings.motors[1], settings, factory, lgpio.clock)
    assert not isinstance(four_wire, PulseTrain)  # coils are stepped by the Python loop


def test_simulated_pulse_train_turns_exact_rounds_and_records_every_pulse(
    ledger: CommandLedger, tmp_path: Path
) -> None:
    config = simulated_config(tmp_path, "redis://127.0.0.1:1/0", 1883, simulation={"pulse_train": True})
    settings = parse_settings(config)
    motor_settings = settings.motors[0]
    clock = ScaledClock(20.0)
    driver = build_driver(motor_settings, settings, None, clock)
    assert isinstance(driver, SimulatedPulseTrain)
    profile = MotionProfile(motor_settings.pulses_per_round, 2000.0, 20_000.0)
    ledger.submit(motor_settings.name, "c-00000001", 3, None)
    ledger.submit(motor_settings.name, "c-00000002", 2, 30.0)
    motor = MotorController(motor_settings.name, driver, ledger, profile, clock, idle_poll_s=0.05)
    motor.start()
    wait_until(lambda: ledger.status(motor_settings.name).commands_done == 2)
    motor.close()
    pulses = 5 * motor_settings.pulses_per_round
    assert recorded_steps(tmp_path, motor_settings.name) == pulses == driver.driver.net_steps
    assert ledger.status(motor_settings.name).rounds_completed == 5
    # Each pulse is recorded at its planned time: the second command's cruise at 30 rpm.
    times = [t for t, _ in list(driver.driver.steps)[-motor_settings.pulses_per_round :]]
    cruise = [b - a for a, b in itertools.pairwise(times)]
    assert statistics.median(cruise) == pytest.approx(60 / 30 / motor_settings.pulses_per_round, rel=0.01)
    assert min(b - a for a, b in itertools.pairwise(t for t, _ in driver.driver.steps)) > 0
    # Without the option the Python loop times every pulse.
    plain = parse_settings(simulated_config(tmp_path, "redis://127.0.0.1:1/0", 1883))
    assert not isinstance(build_driver(plain.motors[0], plain, None, clock), PulseTrain)
