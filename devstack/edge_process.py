"""`giftwheel edge` on simulated motors as a real child process, and the one config it runs with
in the edge tests, the edge benchmark and the local stack.

The simulated driver records every pulse as one line under ``workdir/steps``, so what a motor
turned is read from the edge's own durable record, also after a kill -9.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from devstack.processes import ManagedProcess, giftwheel_argv

GATEWAY_TOKEN = "edge-test-gateway-token"  # noqa: S105 (the gateway device tests create)


@dataclass(frozen=True)
class SimMotor:
    name: str
    driver: str
    pins: dict[str, Any]
    steps_per_round: int
    microstepping: int
    max_step_rate_sps: float
    acceleration_sps2: float | None = None  # None: full speed within 25 ms

    @property
    def pulses_per_round(self) -> int:
        return self.steps_per_round * self.microstepping

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "driver": self.driver,
            "pins": copy.deepcopy(self.pins),  # a caller may edit its config: not the shared motor
            "steps_per_round": self.steps_per_round,
            "microstepping": self.microstepping,
            "max_step_rate_sps": self.max_step_rate_sps,
            "acceleration_sps2": self.acceleration_sps2 or self.max_step_rate_sps * 40,
        }


# Small, fast wheels: 10 rounds/s each at real time, before the simulation's time scale.
DEFAULT_MOTORS = (
    SimMotor("motor_01", "a4988", {"step": 17, "dir": 27, "enable": 22}, 200, 1, 2000),
    SimMotor("motor_02", "uln2003", {"coils": [5, 6, 13, 19]}, 100, 2, 2000),
)


def simulated_config(
    workdir: Path,
    redis_url: str,
    tb_port: int,
    token: str = GATEWAY_TOKEN,
    *,
    motors: tuple[SimMotor, ...] = DEFAULT_MOTORS,
    time_scale: float = 1.0,
    **overrides: Any,
) -> dict[str, Any]:
    """The edge config for simulated ``motors``; ``overrides`` replace top-level keys, except that a
    ``simulation`` override is merged into the simulated defaults."""
    config: dict[str, Any] = {
        "thingsboard": {"host": "127.0.0.1", "port": tb_port, "access_token": token},
        "redis_url": redis_url,
        "state_dir": str(workdir / "state"),
        "simulation": {"enabled": True, "time_scale": time_scale, "record_dir": str(workdir / "steps")},
        "offline_ready_after_s": 1,
        "heartbeat_interval_s": 5,
        "log_level": "INFO",
        "motors": [motor.config() for motor in motors],
    }
    simulation = config["simulation"] | overrides.pop("simulation", {})
    return config | overrides | {"simulation": simulation}


def recorded_steps(workdir: Path, motor: str) -> int:
    """Pulses the simulated driver recorded for ``motor`` (read in chunks: a long run has millions)."""
    record = workdir / "steps" / f"{motor}.steps"
    if not record.exists():
        return 0
    with record.open("rb") as steps:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: steps.read(1 << 20), b""))


class EdgeDaemon(ManagedProcess):
    """One `giftwheel edge` run on ``config``, written to ``workdir/edge.yaml``.

    Leaving the ``with`` block kills it with -9, so nothing after a test's last step (a parking
    deceleration, a last flush) changes what the test then inspects; ``stop()`` is SIGTERM, as
    systemd stops the service. Without ``ready`` it does not wait (tests wait for what they need).
    """

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        env: dict[str, str] | None = None,
        *,
        log_dir: Path | None = None,
        ready: Callable[[], bool] | None = None,
    ) -> None:
        self.workdir = workdir
        self.config_path = workdir / "edge.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        # One log per instance: a test that runs the daemon again reads only the new run's output.
        super().__init__(
            f"edge-{time.monotonic_ns()}",
            giftwheel_argv("edge", "--config", str(self.config_path)),
            log_dir=log_dir or workdir,
            env=env,
            cwd=workdir,
            ready=ready,
        )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def close(self) -> None:
        self.kill()
