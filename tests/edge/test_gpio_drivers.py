"""Exact pin sequences: gpiozero's MockFactory pins and a pytest-mock RPi.GPIO module."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gpiozero import DigitalOutputDevice
from gpiozero.pins.mock import MockFactory
from pytest_mock import MockerFixture

from devstack.edge_process import simulated_config
from edge.errors import PinBackendError
from edge.motor.backends import gpiozero_pins, rpi_gpio
from edge.motor.driver import DRIVER_SPECS, DriverType, Wiring
from edge.motor.gpio_drivers import HALF_STEP_SEQUENCE, HalfStepDriver, StepDirDriver
from edge.motor.pins import PinBackend, load_pin_factory
from edge.runtime import EdgeRuntime
from edge.settings import parse_settings

COILS = (5, 6, 13, 19)
A4988_HIGH_S = DRIVER_SPECS[DriverType.A4988].min_step_high_s


@pytest.fixture
def mock_factory() -> Iterator[MockFactory]:
    factory = MockFactory()
    yield factory
    factory.reset()


def levels(factory: MockFactory, pins: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(factory.pin(p).state) for p in pins)


def test_half_step_walks_the_eight_phases_forward_and_back(mock_factory: MockFactory) -> None:
    driver = HalfStepDriver(gpiozero_pins.GpiozeroFactory(mock_factory), coil_pins=COILS)
    driver.set_forward(True)
    driver.energise()
    seen = [levels(mock_factory, COILS)]
    for _ in range(8):
        driver.step()
        seen.append(levels(mock_factory, COILS))
    assert seen == [*HALF_STEP_SEQUENCE, HALF_STEP_SEQUENCE[0]]

    driver.set_forward(False)
    back = []
    for _ in range(3):
        driver.step()
        back.append(levels(mock_factory, COILS))
    assert back == [HALF_STEP_SEQUENCE[7], HALF_STEP_SEQUENCE[6], HALF_STEP_SEQUENCE[5]]

    driver.close()
    assert levels(mock_factory, COILS) == (0, 0, 0, 0)
    # Coil A's full history: on at A, held through AB, off at B, on again at DA, off at D going back.
    assert [s.state for s in mock_factory.pin(5).states] == [False, True, False, True, False]


def test_half_step_inverted_direction_runs_the_sequence_backwards(mock_factory: MockFactory) -> None:
    driver = HalfStepDriver(
        gpiozero_pins.GpiozeroFactory(mock_factory), coil_pins=COILS, invert_direction=True
    )
    driver.set_forward(True)
    driver.energise()
    driver.step()
    assert levels(mock_factory, COILS) == HALF_STEP_SEQUENCE[7]


def test_step_dir_move_on_gpiozero_pins(mock_factory: MockFactory) -> None:
    driver = StepDirDriver(
        gpiozero_pins.GpiozeroFactory(mock_factory),
        step_pin=17,
        dir_pin=27,
        enable_pin=22,
        step_high_s=A4988_HIGH_S,
    )
    assert mock_factory.pin(22).state  # active-low enable held high: coils off from the start
    driver.set_forward(True)
    driver.energise()
    for _ in range(3):
        driver.step()
    driver.set_forward(False)
    driver.step()
    driver.close()
    assert [s.state for s in mock_factory.pin(17).states] == [False, *([True, False] * 4)]
    assert [s.state for s in mock_factory.pin(27).states] == [False, True, False]
    # EN ends high (disabled) and stays claimed: a released pin floats and the board pulls EN low.
    assert [s.state for s in mock_factory.pin(22).states] == [False, True, False, True]
    assert mock_factory.pin(22).state


def test_step_dir_exact_call_sequence_on_rpi_gpio(mocker: MockerFixture) -> None:
    gpio = mocker.MagicMock(name="RPi.GPIO")
    mocker.patch.object(rpi_gpio, "import_gpio", return_value=gpio)
    factory = load_pin_factory(PinBackend.RPI_GPIO)
    driver = StepDirDriver(
        factory, step_pin=17, dir_pin=27, enable_pin=22, step_high_s=A4988_HIGH_S, invert_direction=True
    )
    driver.set_forward(True)
    driver.energise()
    driver.step()
    driver.step()
    driver.close()
    c = mocker.call
    assert gpio.mock_calls == [
        c.setwarnings(False),
        c.setmode(gpio.BCM),
        c.setup(17, gpio.OUT, initial=gpio.LOW),
        c.setup(27, gpio.OUT, initial=gpio.LOW),
        c.setup(22, gpio.OUT, initial=gpio.LOW),
        c.output(22, gpio.HIGH),  # released (EN is active low)
        c.output(27, gpio.LOW),  # forward, inverted
        c.output(22, gpio.LOW),  # energised
        c.output(17, gpio.HIGH),
        c.output(17, gpio.LOW),
        c.output(17, gpio.HIGH),
        c.output(17, gpio.LOW),
        c.output(22, gpio.HIGH),  # close() releases first and keeps EN driven high
        c.cleanup(17),
        c.cleanup(27),
    ]


def test_rpi_gpio_off_a_pi_is_a_loud_error(mocker: MockerFixture) -> None:
    mocker.patch.object(
        rpi_gpio, "import_gpio", side_effect=RuntimeError("This module can only be run on a Raspberry Pi!")
    )
    with pytest.raises(PinBackendError, match=r"'rpi_gpio' cannot load.*Raspberry Pi"):
        load_pin_factory(PinBackend.RPI_GPIO)


def test_gpiozero_without_lgpio_is_a_loud_error() -> None:
    # This x86 box has no /dev/gpiochip and no lgpio: the configured backend must refuse, not fall back.
    with pytest.raises(PinBackendError, match="'gpiozero' cannot load"):
        load_pin_factory(PinBackend.GPIOZERO)


class EdgeTimes:
    """A pin as fast as a pin can be (no library in between): when it went high, when it went low."""

    def __init__(self) -> None:
        self.edges: list[tuple[bool, int]] = []

    def on(self) -> None:
        self.edges.append((True, time.perf_counter_ns()))  # taken last: the level is high from here

    def off(self) -> None:
        self.edges.append((False, time.perf_counter_ns()))  # taken first: high until here

    def close(self, *, keep_level: bool = False) -> None:
        pass


class EdgeTimesFactory:
    def __init__(self) -> None:
        self.pins: dict[int, EdgeTimes] = {}

    def output(self, bcm_pin: int) -> EdgeTimes:
        return self.pins.setdefault(bcm_pin, EdgeTimes())

    def close(self) -> None:
        pass


@pytest.mark.parametrize("driver", [d for d, spec in DRIVER_SPECS.items() if spec.wiring is Wiring.STEP_DIR])
def test_step_pulse_is_held_high_for_the_drivers_datasheet_minimum(driver: DriverType) -> None:
    # Not a speed figure: a lower bound the driver guarantees whatever the backend's call overhead.
    factory = EdgeTimesFactory()
    high_s = DRIVER_SPECS[driver].min_step_high_s
    stepper = StepDirDriver(factory, step_pin=17, dir_pin=27, enable_pin=None, step_high_s=high_s)
    for _ in range(200):
        stepper.step()
    edges = factory.pins[17].edges
    assert [level for level, _ in edges] == [True, False] * 200
    shortest_ns = min(low - high for (_, high), (_, low) in zip(edges[::2], edges[1::2], strict=True))
    assert shortest_ns >= high_s * 1e9


def test_a_pin_another_process_holds_stops_the_start_with_one_line_naming_it(
    mock_factory: MockFactory, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Before: gpiozero's GPIOPinInUse (lgpio's "GPIO busy" on a Pi) came out as a traceback, exit 1,
    # and systemd restarted into the same busy pin five times.
    holder = DigitalOutputDevice(27, pin_factory=mock_factory)  # stands for the other process
    monkeypatch.setattr(gpiozero_pins, "lgpio_factory", lambda: mock_factory)
    config = simulated_config(tmp_path, "redis://127.0.0.1:1/0", 1883, simulation={"enabled": False})
    with pytest.raises(PinBackendError) as caught:
        EdgeRuntime(parse_settings(config))
    message = str(caught.value)
    assert message.startswith("GPIO27 cannot be claimed with gpiozero: "), message
    assert "\n" not in message
    holder.close()
