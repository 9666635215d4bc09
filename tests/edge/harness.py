"""Runs the real edge daemon (`giftwheel edge`) as a child process, and always cleans it up."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from devstack.processes import ManagedProcess, ProcessHarness, giftwheel_argv

GATEWAY_TOKEN = "edge-test-gateway-token"


def simulated_config(
    tmp_path: Path, redis_url: str, tb_port: int, token: str = GATEWAY_TOKEN, **overrides: Any
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "thingsboard": {"host": "127.0.0.1", "port": tb_port, "access_token": token},
        "redis_url": redis_url,
        "state_dir": str(tmp_path / "state"),
        "simulation": {"enabled": True, "record_dir": str(tmp_path / "steps")},
        "offline_ready_after_s": 1,
        "heartbeat_interval_s": 5,
        "log_level": "INFO",
        "motors": [
            {"name": "motor_01", "driver": "a4988", "pins": {"step": 17, "dir": 27, "enable": 22},
             "steps_per_round": 200, "max_step_rate_sps": 2000, "acceleration_sps2": 20000},
            {"name": "motor_02", "driver": "uln2003", "pins": {"coils": [5, 6, 13, 19]},
             "steps_per_round": 100, "microstepping": 2, "max_step_rate_sps": 2000,
             "acceleration_sps2": 20000},
        ],
    }  # fmt: skip
    config.update(overrides)
    return config


def until(notify: socket.socket, prefix: bytes) -> list[bytes]:
    """Every notice up to and including the first that starts with ``prefix``."""
    seen: list[bytes] = []
    while not seen or not seen[-1].startswith(prefix):
        seen.append(notify.recv(1024))
    return seen


def collect(notify: socket.socket, seconds: float) -> list[tuple[float, bytes]]:
    """(seconds from now, notice) for every notice within ``seconds``."""
    start = time.monotonic()
    notices = []
    notify.settimeout(0.05)
    while time.monotonic() - start < seconds:
        try:
            notices.append((time.monotonic() - start, notify.recv(1024)))
        except TimeoutError:
            continue
    notify.settimeout(5)
    return notices


def recorded_steps(tmp_path: Path, motor: str) -> int:
    path = tmp_path / "steps" / f"{motor}.steps"
    return len(path.read_bytes().splitlines()) if path.exists() else 0


class EdgeDaemon(ProcessHarness):
    """One `giftwheel edge` run; no readiness wait (tests wait for what they need).

    Leaving the ``with`` block kills it with -9, so nothing after a test's last step (a parking
    deceleration, a last flush) changes what the test then inspects."""

    def __init__(self, config: dict[str, Any], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.config_path = workdir / "edge.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        # One log per run: a test that restarts the daemon reads only the current run's output.
        self._process = ManagedProcess(
            f"edge-{time.monotonic_ns()}",
            giftwheel_argv("edge", "--config", str(self.config_path)),
            log_dir=workdir,
            env=env,
            cwd=workdir,
        )
        self.log_path = self._process.log_path

    def start(self) -> Self:
        self._process.start()
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout_s: float = 20.0) -> int | None:
        """SIGTERM, as systemd stops the service; returns the exit code (-9 if it had to be killed)."""
        return self._process.stop(timeout_s)

    def kill(self) -> None:
        """kill -9: a crash or power cut."""
        self._process.kill()

    def __enter__(self) -> Self:
        return self if self.running else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()
