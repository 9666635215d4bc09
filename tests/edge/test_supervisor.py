"""systemd readiness, status and watchdog from the daemon's supervisor: a motor loop that hangs, and
a local Redis that goes away (real redis-server, stopped and started again)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from devstack.edge_process import simulated_config
from devstack.ports import free_port
from devstack.redis_server import RedisServer
from edge.daemon import Supervisor
from edge.motor.simulated import SimulatedDriver
from edge.runtime import EdgeRuntime
from edge.settings import parse_settings
from tests.notify_socket import collect, notify_socket, until

OFFLINE = b"STATUS=ThingsBoard unreachable; running the local queue offline"


class HangingDriver(SimulatedDriver):
    """A driver whose step() never returns once ``hang`` is set: a stuck GPIO call."""

    def __init__(self, driver: SimulatedDriver) -> None:
        super().__init__(driver._clock)
        self.hang = threading.Event()
        self.release_hang = threading.Event()

    def step(self) -> None:
        if self.hang.is_set():
            self.release_hang.wait()
        super().step()


@contextmanager
def supervised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, redis_url: str, **overrides: Any
) -> Iterator[tuple[socket.socket, EdgeRuntime]]:
    """A runtime on simulated motors (ThingsBoard unreachable) and its supervisor, notifying a real
    datagram socket with a 1 s watchdog."""
    with notify_socket(tmp_path, timeout_s=5, watchdog_s=1) as (notify, env):
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        config = simulated_config(tmp_path, redis_url, free_port(), offline_ready_after_s=0, **overrides)
        settings = parse_settings(config)
        runtime = EdgeRuntime(settings)
        runtime.start()
        supervisor = Supervisor(runtime, 0, settings.buffer_outage_restart_s)
        supervisor.start()
        try:
            yield notify, runtime
        finally:
            supervisor.close()
            runtime.close()


def test_watchdog_stops_when_a_motor_loop_hangs(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    with supervised(tmp_path, monkeypatch, redis_server.url) as (notify, runtime):
        motor = runtime.controllers["motor_01"]
        assert isinstance(motor.driver, SimulatedDriver)
        hanging = HangingDriver(motor.driver)
        motor.driver = hanging
        try:
            assert until(notify, b"READY=1")[-1] == b"READY=1\n" + OFFLINE
            assert notify.recv(1024) == b"WATCHDOG=1"
            hanging.hang.set()
            motor.submit("c-0000a0a0", 1, None)
            # Within WatchdogSec/2 of the last step the pings stop, so systemd would restart us.
            pings = [t for t, notice in collect(notify, 2.5) if notice == b"WATCHDOG=1"]
            assert not pings or pings[-1] < 1.0, pings
        finally:
            hanging.release_hang.set()


def test_a_lost_local_redis_shows_in_the_status_and_stops_the_watchdog_after_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before: READY and "connected" stayed, and the watchdog was fed for as long as Redis was gone,
    # while no command could be taken. The outage setting here: 1.5 s; watchdog pings every 0.25 s.
    with (
        RedisServer() as redis_server,
        supervised(tmp_path, monkeypatch, redis_server.url, buffer_outage_restart_s=1.5) as (notify, _),
    ):
        until(notify, b"READY=1")
        assert notify.recv(1024) == b"WATCHDOG=1"
        redis_server.stop()
        notices = collect(notify, 4.0)
        lost = f"STATUS=local Redis {redis_server.url} unreachable: the motors can take no command".encode()
        assert [n for _, n in notices if n.startswith(b"STATUS=")] == [lost], notices
        lost_at = next(t for t, n in notices if n == lost)
        pings = [t for t, n in notices if n == b"WATCHDOG=1" and t > lost_at]
        assert pings, "the watchdog stopped at once: a short outage must not restart the daemon"
        assert pings[-1] - lost_at < 1.5 + 0.3, notices
        assert not [t for t in pings if t > 3.0], notices  # the last second: no ping, systemd acts

        redis_server.start()
        assert until(notify, b"STATUS=") == [OFFLINE]
        assert notify.recv(1024) == b"WATCHDOG=1"


def test_no_readiness_while_the_local_redis_is_down_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    redis_server = RedisServer()  # its port, not started yet
    try:
        with supervised(tmp_path, monkeypatch, redis_server.url) as (notify, _):
            waiting = collect(notify, 1.5)
            assert [n for _, n in waiting] == [
                f"STATUS=local Redis {redis_server.url} unreachable: the motors can take no command".encode()
            ]
            redis_server.start()
            assert notify.recv(1024) == b"READY=1\n" + OFFLINE
    finally:
        redis_server.close()
