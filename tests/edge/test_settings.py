"""The edge config: a valid file loads; each mistake is an error that names the field."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.errors import ConfigError
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
        ("motors.0.microstepping", 32, "motors[0].microstepping: a4988 supports at most 1/16"),
        ("motors.1.microstepping", 1, "motors[1].microstepping: must be 2 for uln2003"),
        ("motors.0.max_step_rate_sps", 0, "motors[0].max_step_rate_sps: Input should be greater than 0"),
        ("motors.0.pins.step", 40, "motors[0].pins.step: Input should be less than or equal to 27"),
        ("motors.0.speed", 3, "motors[0].speed: Extra inputs are not permitted"),
        ("thingsboard.access_token", KeyError,
         "thingsboard: set exactly one of access_token or access_token_file"),
        ("motors", [], "motors: List should have at least 1 item"),
    ],
)  # fmt: skip
def test_bad_config_names_the_field(path: str, value: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_settings(with_change(path, value))


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
