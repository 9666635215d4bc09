"""The daemon as a process, with ThingsBoard unreachable: offline mode, readiness, SIGTERM, loud errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis as redis_lib
import yaml

from devstack.edge_process import EdgeDaemon, recorded_steps, simulated_config
from devstack.ports import free_port
from devstack.redis_server import RedisServer
from devstack.waiting import wait_until
from edge.buffer.ledger import CommandLedger
from tests.notify_socket import drain, notify_socket, until

pytestmark = pytest.mark.slow


def test_offline_daemon_runs_the_local_queue_reports_ready_and_stops_on_sigterm(
    tmp_path: Path, redis_server: RedisServer, sync_redis: redis_lib.Redis
) -> None:
    ledger = CommandLedger(sync_redis, dedupe_ttl_s=60, max_queued_rounds=1000)
    ledger.submit("motor_01", "c-0000f001", 3, None)  # queued before the daemon starts (a restart)
    with notify_socket(tmp_path, timeout_s=20, watchdog_s=2) as (notify, env):
        config = simulated_config(tmp_path, redis_server.url, free_port())
        with EdgeDaemon(config, tmp_path, env=env) as daemon:
            assert until(notify, b"READY=1")[-1].startswith(b"READY=1\nSTATUS=ThingsBoard unreachable")
            assert notify.recv(1024) == b"WATCHDOG=1"
            wait_until(lambda: ledger.status("motor_01").commands_done == 1, 20)
            assert recorded_steps(tmp_path, "motor_01") == 3 * 200
            ledger.submit("motor_02", "c-0000f002", 400, None)
            wait_until(lambda: ledger.status("motor_02").rounds_completed >= 1, 20)
            assert daemon.stop() == 0
        assert b"STOPPING=1" in drain(notify, 0.5)
    status = ledger.status("motor_02")
    assert 1 <= status.rounds_completed < 400
    assert status.queued_rounds == 400 - status.rounds_completed  # parked, the rest waits for restart
    # Telemetry waits in the outbox, in order, for ThingsBoard.
    assert sync_redis.xlen(ledger.keys.outbox) >= 3 + 3


def run_cli(tmp_path: Path, config: dict[str, object]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "edge.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "giftwheel.cli", "edge", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_unloadable_gpio_backend_is_a_loud_startup_error(tmp_path: Path) -> None:
    config = simulated_config(tmp_path, "redis://127.0.0.1:1/0", free_port(), simulation={"enabled": False})
    result = run_cli(tmp_path, config)
    assert result.returncode == 2
    assert "GPIO backend 'gpiozero' cannot load" in result.stderr
    assert "motors running" not in result.stderr


def test_bad_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    config = simulated_config(tmp_path, "redis://127.0.0.1:1/0", free_port())
    config["motors"][1]["pins"]["coils"][0] = 17
    result = run_cli(tmp_path, config)
    assert result.returncode == 2
    assert "motors[1].pins.coils[0]: pin 17 is already used by motors[0].pins.step" in result.stderr


def test_a_malformed_redis_url_exits_2_with_one_line(tmp_path: Path) -> None:
    # Before: accepted by the config, then redis' ValueError as a traceback and exit 1.
    result = run_cli(tmp_path, simulated_config(tmp_path, "127.0.0.1:6379", free_port()))
    assert result.returncode == 2, result.stderr
    assert "redis_url: '127.0.0.1:6379' is not a Redis URL: Redis URL must specify one of" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unwritable_state_dir_exits_2_with_one_line(tmp_path: Path) -> None:
    # Before: a PermissionError / NotADirectoryError traceback and exit 1, restarted five times.
    (tmp_path / "a-file").write_text("")
    config = simulated_config(
        tmp_path, "redis://127.0.0.1:1/0", free_port(), state_dir=str(tmp_path / "a-file" / "state")
    )
    result = run_cli(tmp_path, config)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        f"giftwheel edge: state_dir: cannot write the gateway's files under {tmp_path}/a-file/state: "
    )
