"""The edge config: a valid file loads; each mistake is an error that names the field."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.errors import ConfigError
from edge.motor.driver import DRIVER_SPECS, DriverType
from edge.settings import load_settings, parse_settings

EXAMPLE = Path(__file__).parents[2] / "deploy" / "edge.example.yaml"

VALID: dict[str, Any] = {
    "thingsboard": {"host": "tb.local", "port": 1883, "access_token": "T"},
    "motors": [
        {"name": "motor_01", "driver": "a4988", "pins": {"step": 17, "dir": 27, "enable": 22},
         "steps_per_round": 200, "microstepping": 16, "max_step_rate_sps": 3200, "acceleration_sps2": 8000},
        {"name": "motor_02", "driver": "uln2003", "pins": {"coils": [5, 6, 13, 19]},
         "steps_per_round": 2048, "microstepping": 2, "max_step_rate_sps": 800, "acceleration_sps2": 1600},
    ],
}  # fmt: skip


def with_change(path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(VALID)
    node: Any = data
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[int(part)] if part.isdigit() else node[part]
    last = parts[-1]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


def test_example_config_is_valid() -> None:
    settings = load_settings(EXAMPLE)
    assert settings.motors[0].name
    assert settings.thingsboard.port == 1883


def test_valid_config_derives_pulses_per_round() -> None:
    settings = parse_settings(VALID)
    assert [m.pulses_per_round for m in settings.motors] == [3200, 4096]


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("motors.0.pins.step", KeyError, "motors[0].pins.step: required for driver a4988"),
        ("motors.1.pins.coils", [5, 6, 13], "motors[1].pins.coils: List should have at least 4 items"),
        ("motors.0.driver", "l298n", "motors[0].driver: Input should be 'a4988'"),
        ("motors.1.pins.coils", [5, 6, 13, 17],
         "motors[1].pins.coils[3]: pin 17 is already used by motors[0].pins.step"),
        ("motors.0.pins.dir", 17, "motors[0].pins.dir: pin 17 is already used as pins.step"),
        ("motors.1.name", "motor_01", "motors[1].name: 'motor_01' is already motors[0]"),
        ("motors.0.microstepping", 32, "motors[0].microstepping: a4988 can do 1, 2, 4, 8, 16, not 32"),
        ("motors.0.microstepping", 3, "motors[0].microstepping: a4988 can do 1, 2, 4, 8, 16, not 3"),
        ("motors.1.microstepping", 1, "motors[1].microstepping: uln2003 can do 2, not 1"),
        ("motors.0.max_step_rate_sps", 0, "motors[0].max_step_rate_sps: Input should be greater than 0"),
        ("motors.0.max_step_rate_sps", 500_000,
         "motors[0].max_step_rate_sps: 500000 is above the 5000 steps/s gpio_backend gpiozero can produce"),
        ("motors.0.max_step_rate_sps", True, "motors[0].max_step_rate_sps: Input should be a valid number"),
        ("motors.0.steps_per_round", True, "motors[0].steps_per_round: Input should be a valid integer"),
        ("motors.0.enable_active_low", 1, "motors[0].enable_active_low: Input should be a valid boolean"),
        ("thingsboard.port", "1883", "thingsboard.port: Input should be a valid integer"),
        ("motors.0.pins.step", 14, "motors[0].pins.step: pin 14 is reserved: TXD of the primary UART"),
        ("motors.0.pins.enable", 15, "motors[0].pins.enable: pin 15 is reserved: RXD of the primary UART"),
        ("motors.1.pins.coils", [0, 6, 13, 19],
         "motors[1].pins.coils[0]: pin 0 is reserved: ID_SD (the HAT ID EEPROM)"),
        ("motors.0.pins.dir", 1, "motors[0].pins.dir: pin 1 is reserved: ID_SC (the HAT ID EEPROM)"),
        ("motors.0.step_high_us", 0.5, "motors[0].step_high_us: a4988 needs STEP high for at least 1 us"),
        ("motors.1.step_high_us", 5, "motors[1].step_high_us: not used by driver uln2003"),
        ("motors.0.pins.step", 40, "motors[0].pins.step: Input should be less than or equal to 27"),
        ("motors.0.speed", 3, "motors[0].speed: Extra inputs are not permitted"),
        ("motors.0.acceleration_sps2", 1000,
         "motors[0].acceleration_sps2: stopping from 3200 steps/s takes 5120 pulses, more than half of the "
         "3200 pulses max_unwritten_rounds lets a motor run past its checkpoint"),
        ("thingsboard.access_token", KeyError,
         "thingsboard: set exactly one of access_token or access_token_file"),
        ("motors", [], "motors: List should have at least 1 item"),
        ("redis_url", "localhost:6379", "redis_url: 'localhost:6379' is not a Redis URL: Redis URL must"),
        ("redis_url", "redis://h:port/0", "redis_url: 'redis://h:port/0' is not a Redis URL: Port could not"),
    ],
)  # fmt: skip
def test_bad_config_names_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_settings(with_change(path, value))


def test_a_rate_the_driver_allows_but_the_backend_cannot_produce_is_refused() -> None:
    # Before: anything up to the chip's own limit passed (500,000 steps/s on an A4988), while the
    # software-timed backends manage a few thousand. The backend's ceiling is the real one.
    data = with_change("motors.0.max_step_rate_sps", 5_001)
    for backend in ("gpiozero", "rpi_gpio"):
        with pytest.raises(ConfigError, match=rf"above the 5000 steps/s gpio_backend {backend} can"):
            parse_settings({**data, "gpio_backend": backend})
    assert (
        parse_settings(with_change("motors.0.max_step_rate_sps", 5_000)).motors[0].max_step_rate_sps == 5_000
    )


def test_a_motor_that_stops_slowly_needs_a_larger_unwritten_bound() -> None:
    # A motor comes to rest within max_unwritten_rounds of its last checkpoint (so a kill -9 repeats
    # no more); one that needs 1.6 rounds to stop would brake at every checkpoint under a 1-round bound.
    slow = with_change("motors.0.acceleration_sps2", 1000)
    with pytest.raises(ConfigError, match="raise acceleration_sps2 or max_unwritten_rounds"):
        parse_settings(slow)
    assert parse_settings({**slow, "max_unwritten_rounds": 4}).motors[0].acceleration_sps2 == 1000


def test_step_high_time_defaults_to_the_drivers_minimum_and_can_be_longer() -> None:
    a4988 = parse_settings(VALID).motors[0]
    assert a4988.step_high_s == DRIVER_SPECS[DriverType.A4988].min_step_high_s == 1e-6
    drv8825 = parse_settings(with_change("motors.0.driver", "drv8825")).motors[0]
    assert drv8825.step_high_s == 1.9e-6
    longer = parse_settings(with_change("motors.0.step_high_us", 5)).motors[0]
    assert longer.step_high_s == pytest.approx(5e-6)
    too_short = with_change("motors.0.driver", "drv8825")
    too_short["motors"][0]["step_high_us"] = 1.5
    with pytest.raises(ConfigError, match=r"drv8825 needs STEP high for at least 1.9 us"):
        parse_settings(too_short)


def test_duplicate_yaml_keys_are_refused_with_their_lines(tmp_path: Path) -> None:
    # PyYAML keeps the last of two equal keys without a word: the first value would be lost silently.
    text = yaml.safe_dump(VALID, sort_keys=False)
    config = tmp_path / "edge.yaml"
    config.write_text(
        text.replace(
            "  max_step_rate_sps: 3200\n", "  max_step_rate_sps: 3200\n  max_step_rate_sps: 320\n", 1
        )
    )
    line = config.read_text().splitlines().index("  max_step_rate_sps: 320") + 1
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert str(caught.value) == (
        f"{config} is not valid YAML: "
        f"line {line}: duplicate key 'max_step_rate_sps' (first on line {line - 1})"
    )
    config.write_text(text + "log_level: DEBUG\nlog_level: INFO\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'log_level'"):
        load_settings(config)


def test_a_yaml_merge_key_may_be_overridden(tmp_path: Path) -> None:
    # A key a << merge brought in and the mapping sets again is YAML's override, not a duplicate.
    config = tmp_path / "edge.yaml"
    config.write_text(
        "thingsboard: {host: tb.local, access_token: T}\n"
        "motors:\n"
        "  - &nema17 {name: motor_01, driver: a4988, steps_per_round: 200, microstepping: 16,\n"
        "             max_step_rate_sps: 3200,\n"
        "             acceleration_sps2: 8000, pins: {step: 17, dir: 27}}\n"
        "  - <<: *nema17\n"
        "    name: motor_02\n"
        "    pins: {step: 5, dir: 6}\n"
    )
    settings = load_settings(config)
    assert [(m.name, m.pins.step, m.max_step_rate_sps) for m in settings.motors] == [
        ("motor_01", 17, 3200),
        ("motor_02", 5, 3200),
    ]


def test_unreadable_or_broken_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config"):
        load_settings(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("motors: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(broken)


def test_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    data = with_change("thingsboard", {"access_token_file": str(token_file)})
    settings = parse_settings(data)
    with pytest.raises(ConfigError, match=r"thingsboard\.access_token_file: cannot read"):
        settings.thingsboard.token()
    token_file.write_text("secret-token\n")
    assert settings.thingsboard.token() == "secret-token"
    assert "secret-token" not in repr(parse_settings(yaml.safe_load(yaml.safe_dump(VALID))))
