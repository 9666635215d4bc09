"""Rules: routing, multipliers, caps, clear errors, and hot reload that never swaps in a bad file."""

from __future__ import annotations

import asyncio
import os
import signal
from importlib import resources
from pathlib import Path

import pytest
import yaml

from cloud.worker.rules import DEFAULT_RULE, RulesError, load_rules, parse_rules
from cloud.worker.rules_source import RulesSource
from tests.waiting import wait_until
from tests.worker.conftest import gift

EXAMPLE = resources.files("cloud.worker").joinpath("rules.example.yaml")


def test_example_rules_file_loads_and_routes() -> None:
    rules = parse_rules(yaml.safe_load(EXAMPLE.read_text()), "example")
    assert rules.route(gift(gift_name="rose", diamond=1, quantity=3)).device == "motor_02"
    assert rules.route(gift(gift_name="rose", diamond=1, quantity=3)).rounds == 6
    assert rules.route(gift(gift_name="Lion", diamond=2000)).device == "motor_01"
    assert rules.route(gift(gift_name="Lion", diamond=2000)).rounds == 1000
    other = rules.route(gift(gift_name="Heart", diamond=5, quantity=2))
    assert (other.device, other.rounds, other.rule) == ("motor_01", 10, DEFAULT_RULE)
    assert rules.command_cap("motor_02") == 500
    assert rules.command_cap("motor_01") == 10000


def test_first_match_wins_and_every_criterion_must_hold() -> None:
    rules = parse_rules(
        {
            "default_device": "d0",
            "rules": [
                {"name": "yt roses", "match": {"gift_name": ["Rose"], "platform": "youtube"}, "device": "d1"},
                {"name": "mid", "match": {"diamond_min": 10, "diamond_max": 99}, "device": "d2"},
                {"name": "any rose", "match": {"gift_name": "ROSE"}, "device": "d3", "multiplier": 3},
            ],
        }
    )
    assert rules.route(gift(gift_name="Rose", platform="youtube")).device == "d1"
    assert rules.route(gift(gift_name="Rose", diamond=50)).device == "d2"
    assert rules.route(gift(gift_name="Rose", diamond=100)).rounds == 300
    assert rules.route(gift(gift_name="Heart", diamond=100)).device == "d0"
    assert rules.route(gift(gift_name="Heart", diamond=9)).device == "d0"


def test_fractional_multiplier_still_turns_at_least_one_round() -> None:
    rules = parse_rules({"default_device": "d0", "multiplier": 0.1})
    assert rules.route(gift(diamond=1)).rounds == 1
    assert rules.route(gift(diamond=25)).rounds == 2


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({}, "default_device: Field required"),
        ({"default_device": "bad name!"}, "default_device: String should match pattern"),
        ({"default_device": "d", "colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"default_device": "d", "multiplier": 0}, "multiplier: Input should be greater than 0"),
        (
            {
                "default_device": "d",
                "rules": [{"name": "r", "match": {"diamond_min": 5, "diamond_max": 1}, "device": "d"}],
            },
            "rules.0.match: diamond_min 5 is above diamond_max 1",
        ),
        (
            {"default_device": "d", "rules": [{"name": "r", "device": "d"}, {"name": "r", "device": "e"}]},
            "rule names must be unique; repeated: r",
        ),
        ({"default_device": "d", "rules": [{"name": "r"}]}, "rules.0.device: Field required"),
    ],
)
def test_invalid_rules_are_refused_with_the_place_and_reason(data: dict[str, object], reason: str) -> None:
    with pytest.raises(RulesError, match=r"^rules\.yaml: ") as caught:
        parse_rules(data, "rules.yaml")
    assert reason in str(caught.value)


def test_unreadable_and_non_yaml_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("default_device: [unclosed\n")
    with pytest.raises(RulesError, match="not valid YAML"):
        load_rules(bad)
    bad.write_text("- just\n- a list\n")
    with pytest.raises(RulesError, match="expected a mapping"):
        load_rules(bad)


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    # Make the change visible to an mtime check even within the filesystem's timestamp granularity.
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


async def test_file_change_reloads_and_a_bad_file_keeps_the_old_rules(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("default_device: first\n")
    source = RulesSource(path)
    watcher = asyncio.create_task(source.watch(0.02))
    try:
        _write(path, "default_device: second\n")
        await wait_until(lambda: source.current.route(gift()).device == "second")

        _write(path, "default_device: [broken\n")
        await wait_until(lambda: source.last_error is not None)
        assert "not valid YAML" in (source.last_error or "")
        assert source.current.route(gift()).device == "second"

        _write(path, "default_device: third\n")
        await wait_until(lambda: source.current.route(gift()).device == "third")
        assert source.last_error is None
    finally:
        watcher.cancel()


async def test_sighup_reloads_at_once(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("default_device: first\n")
    source = RulesSource(path)
    watcher = asyncio.create_task(source.watch(3600))  # only the signal can trigger a reload
    try:
        await asyncio.sleep(0.05)
        path.write_text("default_device: after_hup\n")
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_until(lambda: source.current.route(gift()).device == "after_hup")
        assert source.reloads == 1
    finally:
        watcher.cancel()


def test_a_worker_with_a_bad_rules_file_refuses_to_start(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("rules: []\n")
    with pytest.raises(RulesError, match="default_device: Field required"):
        RulesSource(path)
