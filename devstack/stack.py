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
from typing import Any, Self

import orjson

from cloud.console.passwords import hash_password
from devstack.api_process import ApiProcess
from devstack.edge_process import DEFAULT_MOTORS, EdgeDaemon, SimMotor, recorded_steps, simulated_config
from devstack.processes import Harness, ManagedProcess, giftwheel_argv
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


@dataclass
class StackOptions:
    workers: int = 2
    time_scale: float = 10.0
    motors: tuple[SimMotor, ...] = DEFAULT_MOTORS
    # Top-level keys of the edge's config that replace the simulated defaults.
    edge: dict[str, Any] = field(default_factory=dict)
    rules: Path = DEMO_RULES
    api_key: str = field(default_factory=lambda: "demo-" + secrets.token_hex(16))
    feedback_secret: str = field(default_factory=lambda: "feedback-" + secrets.token_hex(16))
    # The control room's operator of a local run (the demo prints both); production has none by default.
    console_user: str = "operator"
    console_password: str = field(default_factory=lambda: "dev-" + secrets.token_hex(6))
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


class LocalStack(Harness):
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
        edge_config = simulated_config(
            workdir,
            self.edge_redis.url,
            self.tb.mqtt_port,
            shipped_token("gateway"),
            motors=self.options.motors,
            time_scale=self.options.time_scale,
            **{"log_level": "WARNING", **self.options.edge},
        )
        self.edge = EdgeDaemon(edge_config, workdir, log_dir=self.logs, ready=self._motors_announced)

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
            "GIFTWHEEL_CONSOLE__OPERATORS": orjson.dumps(
                {self.options.console_user: hash_password(self.options.console_password)}
            ).decode(),
        }

    def _worker_env(self, dispatcher_token: str) -> dict[str, str]:
        return {
            "GIFTWHEEL_WORKER__MQTT__PORT": str(self.tb.mqtt_port),
            "GIFTWHEEL_WORKER__MQTT__ACCESS_TOKEN": dispatcher_token,
            **self.options.worker_env,
        }

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
        self.edge.start(timeout_s=60)
        return self

    def close(self) -> None:
        for process in [self.edge, *self.workers]:
            process.stop()
        self.tb.stop()
        self.api.stop()
        self.edge_redis.close()
        self.cloud_redis.close()

    def rounds_turned(self, motor: SimMotor) -> float:
        """Rounds from the edge's own durable step record (one line per pulse)."""
        return recorded_steps(self.workdir, motor.name) / motor.pulses_per_round
