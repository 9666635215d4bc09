"""The shipped systemd units pass `systemd-analyze verify` (strictly: no warnings), keep their hardening,
and keep what the edge daemon needs to reach GPIO under that hardening."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.worker.cli import EXIT_TOKEN_IN_USE
from edge.errors import EXIT_CONFIG
from tests.ops.units import (
    UNIT_DIR,
    UNITS,
    directives,
    exec_start_binary,
    exposure,
    instance_name,
    make_unit_root,
    verify,
)

# systemd-analyze security's score; ours sit at 1.7-2.0 ("OK"). A rise means hardening was dropped.
MAX_EXPOSURE = 2.5


def test_every_unit_is_shipped() -> None:
    assert UNITS == ["giftwheel-api.service", "giftwheel-edge.service", "giftwheel-worker@.service"]


@pytest.fixture
def unit_root(tmp_path: Path) -> Path:
    binaries = sorted({exec_start_binary((UNIT_DIR / unit).read_text()) for unit in UNITS})
    return make_unit_root(tmp_path / "root", binaries)


def test_units_verify_without_a_single_warning(unit_root: Path) -> None:
    result = verify(unit_root, [instance_name(u) for u in UNITS])
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr


def test_verify_catches_a_misspelt_directive(unit_root: Path) -> None:
    # Guards the check above: verify only warns on unknown keys, so the test must read stderr.
    unit = unit_root / "etc/systemd/system/giftwheel-edge.service"
    unit.write_text(unit.read_text().replace("NoNewPrivileges=", "NoNewPrivilege="))
    result = verify(unit_root, ["giftwheel-edge.service"])
    assert "Unknown key 'NoNewPrivilege'" in result.stderr


def test_verify_catches_a_missing_executable(unit_root: Path) -> None:
    (unit_root / "opt/giftwheel/venv/bin/giftwheel").unlink()
    result = verify(unit_root, ["giftwheel-api.service"])
    assert result.returncode != 0
    assert "is not executable" in result.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_hardening_score_stays_low(unit_root: Path, unit: str) -> None:
    assert exposure(unit_root, instance_name(unit)) <= MAX_EXPOSURE


def test_edge_unit_is_a_watched_notify_service_that_can_reach_gpio() -> None:
    edge = directives((UNIT_DIR / "giftwheel-edge.service").read_text())
    assert edge["Type"] == ["notify"]
    assert int(edge["WatchdogSec"][0]) >= 10
    assert edge["Restart"] == ["on-failure"]
    assert edge["RestartPreventExitStatus"] == [str(EXIT_CONFIG)]  # a config error is not retried
    # Restarts spaced so that StartLimitBurst restarts fit in the interval (else the limit never trips).
    assert int(edge["RestartSec"][0]) * int(edge["StartLimitBurst"][0]) < int(
        edge["StartLimitIntervalSec"][0]
    )
    assert "redis-server.service" in " ".join(edge["After"])
    assert "redis-server.service" in " ".join(edge["Wants"])
    assert edge["SupplementaryGroups"] == ["gpio"]
    assert edge["DevicePolicy"] == ["closed"]
    assert "char-gpiochip rw" in edge["DeviceAllow"]
    assert "PrivateDevices" not in edge  # it would hide /dev/gpiochip*
    assert edge["ProtectSystem"] == ["strict"]
    assert edge["NoNewPrivileges"] == ["yes"]
    # lgpio's FIFO directory must be one the unit makes writable under ProtectSystem=strict.
    lg_wd = next(v for v in edge["Environment"] if v.startswith("LG_WD="))
    assert lg_wd == "LG_WD=%t/" + edge["RuntimeDirectory"][0]
    assert edge["StateDirectory"] == ["giftwheel-edge"]
    assert edge["WorkingDirectory"] == ["/var/lib/giftwheel-edge"]
    assert edge["ConfigurationDirectory"] == ["giftwheel"]
    assert "--config /etc/giftwheel/edge.yaml" in edge["ExecStart"][0]


def test_worker_template_names_its_consumer_after_the_instance() -> None:
    worker = directives((UNIT_DIR / "giftwheel-worker@.service").read_text())
    assert "--worker-id %H-%i" in worker["ExecStart"][0]


def test_each_worker_instance_reads_its_own_dispatcher_token_and_a_taken_token_is_not_restarted() -> None:
    worker = directives((UNIT_DIR / "giftwheel-worker@.service").read_text())
    # cloud.env, then the instance's own token file (optional: a pool in cloud.env instead, not both)
    assert worker["EnvironmentFile"] == ["/etc/giftwheel/cloud.env", "-/etc/giftwheel/worker-%i.env"]
    assert worker["RestartPreventExitStatus"] == [str(EXIT_TOKEN_IN_USE)]
