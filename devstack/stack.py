"""The whole pipeline on one machine, every component a real process, wired by real protocols.

cloud Redis -> `giftwheel api` -> Redis Streams -> `giftwheel worker` x N -> MQTT -> ThingsBoard
emulator (shipped rule chain) -> `giftwheel edge` (real thingsboard-gateway, simulated motors,
its own local Redis) -> telemetry -> rule chain REST node -> API feedback webhook -> viewers.
Used by `giftwheel demo`, the chaos test and the end-to-end benchmark.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import yaml

from devstack.api_process import ApiProcess
from devstack.processes import ManagedProcess, giftwheel_argv
from devstack.redis_server import RedisServer
from devstack.tb_emulator.chains import STOCK_ROOT_CHAIN
from devstack.tb_emulator.devices import load_devices_file
from devstack.tb_emulator.harness import SHIPPED_DEVICES, SHIPPED_QUEUES, EmulatorError, EmulatorProcess
from devstack.tb_emulator.queues import QueueConfig
from devstack.tb_emulator.server import SHIPPED_CHAIN

DEMO_RULES = Path(__file__).with_name("demo_rules.yaml")


def shipped_tokens(device_type: str) -> list[str]:
    """The development tokens of a type's devices in deploy/thingsboard/devices.yaml, in file order."""
    tokens = [
        s.token for s in load_devices_file(SHIPPED_DEVICES).devices if s.type == device_type and s.token
    ]
    if not tokens:
        raise LookupError(f"no {device_type} device with a token in {SHIPPED_DEVICES}")
    return tokens


def shipped_token(device_type: str) -> str:
    """The development token of the first shipped device of a type."""
    return shipped_tokens(device_type)[0]


@dataclass(frozen=True)
class SimMotor:
    name: str
    driver: str
    pins: dict[str, Any]
    steps_per_round: int
    microstepping: int
    max_step_rate_sps: float

    @property
    def pulses_per_round(self) -> int:
        return self.steps_per_round * self.microstepping

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "driver": self.driver,
            "pins": self.pins,
            "steps_per_round": self.steps_per_round,
            "microstepping": self.microstepping,
            "max_step_rate_sps": self.max_step_rate_sps,
            "acceleration_sps2": self.max_step_rate_sps * 10,
        }


# Small, fast wheels: 10 rounds/s each at real time, before the simulation's time scale.
DEFAULT_MOTORS = (
    SimMotor("motor_01", "a4988", {"step": 17, "dir": 27, "enable": 22}, 200, 1, 2000),
    SimMotor("motor_02", "uln2003", {"coils": [5, 6, 13, 19]}, 100, 2, 2000),
)


@dataclass
class StackOptions:
    workers: int = 2
    time_scale: float = 10.0
    motors: tuple[SimMotor, ...] = DEFAULT_MOTORS
    rules: Path = DEMO_RULES
    api_key: str = field(default_factory=lambda: "demo-" + secrets.token_hex(16))
    feedback_secret: str = field(default_factory=lambda: "feedback-" + secrets.token_hex(16))
    # Rule-engine queues beside ThingsBoard's stock three: by default the shipped ones, whose feedback
    # queue posts a webhook refused while the API restarts again instead of leaving its command open
    queues: tuple[Path | QueueConfig, ...] = SHIPPED_QUEUES
    # Tighter than production so crash tests and the demo recover in seconds, not minutes.
    worker_env: dict[str, str] = field(
        default_factory=lambda: {
            "GIFTWHEEL_WORKER__LEASE_TTL_MS": "1500",
            "GIFTWHEEL_WORKER__CLAIM_IDLE_MS": "1500",
            "GIFTWHEEL_WORKER__READ_BLOCK_MS": "50",
        }
    )


class LocalStack:
    def __init__(self, workdir: Path, options: StackOptions | None = None) -> None:
        self.workdir = workdir
        self.options = options or StackOptions()
        self.logs = workdir / "logs"
        self.cloud_redis = RedisServer(appendonly=True, data_dir=self._dir("cloud-redis"))
        self.edge_redis = RedisServer(appendonly=True, data_dir=self._dir("edge-redis"))
        self.api = ApiProcess(self._cloud_env(), log_dir=self.logs)
        self.tb = EmulatorProcess(
            # A tenant as ThingsBoard sets it up: its stock root chain, and the giftwheel chain that
            # `giftwheel tb provision` makes the default of the dispatcher, gateway and motor profiles.
            rule_chain=[STOCK_ROOT_CHAIN, SHIPPED_CHAIN],
            webhook_url=f"{self.api.url}/v1/feedback/thingsboard",
            webhook_secret=self.options.feedback_secret,
            queues=self.options.queues,
        )
        # Each worker its own dispatcher device, as in production (ThingsBoard: one session per device).
        dispatchers = shipped_tokens("dispatcher")
        if self.options.workers > len(dispatchers):
            raise ValueError(
                f"{self.options.workers} workers, {len(dispatchers)} dispatcher devices in {SHIPPED_DEVICES}"
            )
        self.workers = [
            ManagedProcess(
                f"worker-{n}",
                giftwheel_argv("worker", "--rules", str(self.options.rules), "--worker-id", f"w{n}"),
                log_dir=self.logs,
                env={**self._cloud_env(), **self._worker_env(token)},
            )
            for n, token in enumerate(dispatchers[: self.options.workers], start=1)
        ]
        self.edge_config = workdir / "edge.yaml"
        self.steps_dir = workdir / "steps"
        self.edge = ManagedProcess(
            "edge",
            giftwheel_argv("edge", "--config", str(self.edge_config)),
            log_dir=self.logs,
            cwd=self._dir("edge-state"),
            ready=self._motors_announced,
        )

    def _dir(self, name: str) -> Path:
        path = self.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def _cloud_env(self) -> dict[str, str]:
        return {
            "GIFTWHEEL_MODE": "development",
            "GIFTWHEEL_REDIS_URL": self.cloud_redis.url,
            "GIFTWHEEL_API_KEYS": self.options.api_key,
            "GIFTWHEEL_FEEDBACK__SECRET": self.options.feedback_secret,
            "GIFTWHEEL_LOG_LEVEL": "INFO",
        }

    def _worker_env(self, dispatcher_token: str) -> dict[str, str]:
        return {
            "GIFTWHEEL_WORKER__MQTT__PORT": str(self.tb.mqtt_port),
            "GIFTWHEEL_WORKER__MQTT__ACCESS_TOKEN": dispatcher_token,
            **self.options.worker_env,
        }

    def _write_edge_config(self) -> None:
        config = {
            "thingsboard": {
                "host": "127.0.0.1",
                "port": self.tb.mqtt_port,
                "access_token": shipped_token("gateway"),
            },
            "redis_url": self.edge_redis.url,
            "state_dir": str(self._dir("edge-state")),
            "simulation": {
                "enabled": True,
                "time_scale": self.options.time_scale,
                "record_dir": str(self.steps_dir),
            },
            "heartbeat_interval_s": 5,
            "log_level": "WARNING",
            "motors": [motor.config() for motor in self.options.motors],
        }
        self.edge_config.write_text(yaml.safe_dump(config, sort_keys=False))

    def _motors_announced(self) -> bool:
        """Ready once ThingsBoard can deliver an RPC to every motor (through the gateway)."""
        try:
            return all(self.tb.device(m.name)["rpcSessions"] > 0 for m in self.options.motors)
        except (OSError, KeyError, EmulatorError):  # EmulatorError: not created yet (first announce)
            return False

    def start(self) -> Self:
        self.cloud_redis.start()
        self.edge_redis.start()
        self.api.start()
        self.tb.start()
        for worker in self.workers:
            worker.start()
        self._write_edge_config()
        self.edge.start(timeout_s=60)
        return self

    def stop(self) -> None:
        for process in [self.edge, *self.workers]:
            process.stop()
        self.tb.stop()
        self.api.stop()
        self.edge_redis.close()
        self.cloud_redis.close()

    def rounds_turned(self, motor: SimMotor) -> float:
        """Rounds from the edge's own durable step record (one line per pulse)."""
        record = self.steps_dir / f"{motor.name}.steps"
        if not record.exists():
            return 0.0
        with record.open("rb") as steps:
            pulses = sum(chunk.count(b"\n") for chunk in iter(lambda: steps.read(1 << 20), b""))
        return pulses / motor.pulses_per_round

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
