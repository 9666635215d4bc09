"""Runs the real edge daemon (`giftwheel edge`) as a child process, and always cleans it up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

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


def recorded_steps(tmp_path: Path, motor: str) -> int:
    path = tmp_path / "steps" / f"{motor}.steps"
    return len(path.read_bytes().splitlines()) if path.exists() else 0


class EdgeDaemon:
    def __init__(self, config: dict[str, Any], workdir: Path, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.config_path = workdir / "edge.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / f"edge-{time.monotonic_ns()}.log"
        self._env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "giftwheel.cli", "edge", "--config", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self.workdir,
            )
        return self

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM, as systemd stops the service; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout_s)

    def kill(self) -> None:
        """kill -9: a crash or power cut."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> Self:
        return self if self.proc is not None else self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.kill()
