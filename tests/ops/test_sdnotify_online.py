"""What Type=notify + WatchdogSec rely on, with ThingsBoard (the emulator) reachable: the real daemon
sends READY=1 once connected, then WATCHDOG=1 within half the watchdog interval, STOPPING=1 on SIGTERM.

The offline path (READY=1 after offline_ready_after_s without ThingsBoard) is covered by
tests/edge/test_daemon_offline.py; this test covers the connected path it does not.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from devstack.edge_process import GATEWAY_TOKEN, EdgeDaemon, simulated_config
from devstack.redis_server import RedisServer
from devstack.tb_emulator.harness import EmulatorProcess
from tests.notify_socket import drain, notify_socket, until

pytestmark = pytest.mark.slow

WATCHDOG_S = 2.0


def test_connected_daemon_reports_ready_and_feeds_the_watchdog(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    gateway = {"name": "pi-01", "token": GATEWAY_TOKEN, "type": "gateway", "gateway": True}
    with (
        EmulatorProcess([gateway]) as emulator,
        notify_socket(tmp_path, timeout_s=30, watchdog_s=WATCHDOG_S) as (notify, env),
    ):
        # Offline readiness far away: READY must come from the connection, not the offline timer.
        config = simulated_config(tmp_path, redis_server.url, emulator.mqtt_port, offline_ready_after_s=120)
        with EdgeDaemon(config, tmp_path, env=env) as daemon:
            # Before READY, STATUS= says what it waits for (ThingsBoard here).
            *waiting, ready = until(notify, b"READY=1")
            assert ready == b"READY=1\nSTATUS=connected to ThingsBoard", daemon.log
            assert set(waiting) <= {b"STATUS=connecting to ThingsBoard"}, waiting
            assert [s["device"] for s in emulator.sessions()] == ["pi-01"]
            pings = []
            notify.settimeout(WATCHDOG_S)  # systemd would kill the daemon after WATCHDOG_S of silence
            start = time.monotonic()
            while time.monotonic() - start < 3 * WATCHDOG_S:
                pings.append((time.monotonic(), notify.recv(1024)))
            assert {message for _, message in pings} == {b"WATCHDOG=1"}
            gaps = [b[0] - a[0] for a, b in itertools.pairwise(pings)]
            assert max(gaps) < WATCHDOG_S, gaps  # what systemd enforces
            assert daemon.stop() == 0
        assert b"STOPPING=1" in drain(notify, 2)
