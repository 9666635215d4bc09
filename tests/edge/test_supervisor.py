"""systemd readiness and watchdog from the daemon's supervisor, with a motor loop that hangs."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from devstack.ports import free_port
from devstack.redis_server import RedisServer
from edge.daemon import Supervisor
from edge.motor.simulated import SimulatedDriver
from edge.runtime import EdgeRuntime
from edge.settings import parse_settings
from tests.edge.harness import simulated_config


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


def test_watchdog_stops_when_a_motor_loop_hangs(
    tmp_path: Path, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(3)
        monkeypatch.setenv("NOTIFY_SOCKET", str(notify_path))
        monkeypatch.setenv("WATCHDOG_USEC", "1000000")
        config = simulated_config(tmp_path, redis_server.url, free_port(), offline_ready_after_s=0)
        runtime = EdgeRuntime(parse_settings(config))
        motor = runtime.controllers["motor_01"]
        assert isinstance(motor.driver, SimulatedDriver)
        hanging = HangingDriver(motor.driver)
        motor.driver = hanging
        runtime.start()
        supervisor = Supervisor(runtime, offline_ready_after_s=0)
        supervisor.start()
        try:
            assert notify.recv(1024).startswith(b"READY=1")
            assert notify.recv(1024) == b"WATCHDOG=1"
            hanging.hang.set()
            runtime.ledger.submit("motor_01", "c-0000a0a0", 1, None)
            motor.wake()
            # Within WatchdogSec/2 of the last step the pings stop, so systemd would restart us.
            hung_at = time.monotonic()
            pings = []
            notify.settimeout(0.1)
            while time.monotonic() - hung_at < 2.5:
                try:
                    if notify.recv(1024) == b"WATCHDOG=1":
                        pings.append(time.monotonic() - hung_at)
                except TimeoutError:
                    continue
            assert not pings or pings[-1] < 1.0, pings
        finally:
            hanging.release_hang.set()
            supervisor.close()
            runtime.close()
