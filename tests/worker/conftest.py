"""Worker test helpers: gift events, stream entries and settings for a Redis on a free port."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from cloud.redis_client import connect
from cloud.settings import CloudSettings
from cloud.worker.rules import Rules
from cloud.worker.service import Worker
from devstack.rpc_sink import RpcSink
from devstack.stack import shipped_tokens
from devstack.tb_emulator.devices import load_devices_file
from devstack.tb_emulator.harness import SHIPPED_QUEUES
from devstack.tb_emulator.hub import HubSettings
from devstack.tb_emulator.queues import load_queue_file, with_queues
from devstack.tb_emulator.server import SHIPPED_CHAIN, Emulator, EmulatorSettings
from giftwheel.contracts import EVENT_FIELD, GiftEvent

_seq = itertools.count(1)


def gift(**fields: Any) -> GiftEvent:
    n = next(_seq)
    values: dict[str, Any] = {
        "event_id": f"test:{n}",
        "platform": "tiktok",
        "user_id": f"user_{n}",
        "gift_name": "Rose",
        "diamond": 1,
        "quantity": 1,
        "timestamp": int(time.time() * 1000),
    }
    values.update(fields)
    return GiftEvent(**values)


async def enqueue(redis: Redis, stream: str, events: list[GiftEvent]) -> list[str]:
    ids = []
    for event in events:
        ids.append(str(await redis.xadd(stream, {EVENT_FIELD: event.to_json()})))
    return ids


# Every shipped dispatcher device's token: workers in a test claim one each from this pool (as
# `docker compose --scale worker=N` does); ThingsBoard keeps one session per device.
DISPATCHER_TOKENS = shipped_tokens("dispatcher")
DISPATCHER_TOKEN = DISPATCHER_TOKENS[0]  # device dispatcher-1: a test that wants one known device
GATEWAY_TOKEN = "pi-gateway-01-dev-token"
MOTORS = ["motor_01", "motor_02"]
DEVICES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "thingsboard" / "devices.yaml"


def emulator_hub(**fields: Any) -> HubSettings:
    """The emulator's ThingsBoard settings (``fields``) with the shipped rule-engine queues, which
    the shipped device profiles name."""
    queues = tuple(with_queues(load_queue_file(q) for q in SHIPPED_QUEUES))
    return HubSettings(queues=queues, **fields)


async def start_emulator(
    mqtt_port: int = 0, *, chain: Path = SHIPPED_CHAIN, hub: HubSettings | None = None
) -> Emulator:
    settings = EmulatorSettings(mqtt_port=mqtt_port, http_port=0, hub=hub or emulator_hub())
    emulator = Emulator.from_files(settings, load_devices_file(DEVICES_FILE), [chain])
    await emulator.start()
    return emulator


@pytest.fixture
async def emulator() -> AsyncIterator[Emulator]:
    emu = await start_emulator()
    yield emu
    await emu.stop()


@pytest.fixture
async def sink(emulator: Emulator) -> AsyncIterator[RpcSink]:
    pi = RpcSink("127.0.0.1", emulator.mqtt_port, GATEWAY_TOKEN, MOTORS)
    await pi.start()
    yield pi
    await pi.close()


def worker_settings(redis_url: str, mqtt_port: int, shards: int = 1, **worker: Any) -> CloudSettings:
    values: dict[str, Any] = {
        "lease_ttl_ms": 600,
        "claim_idle_ms": 0,
        "read_block_ms": 50,
        "sweep_interval_s": 0.1,
        "mqtt": {"port": mqtt_port, "access_tokens": DISPATCHER_TOKENS, "reconnect_max_s": 0.5},
    }
    values.update(worker)
    return CloudSettings.model_validate(
        {"mode": "development", "redis_url": redis_url, "ingest": {"stream_shards": shards}, "worker": values}
    )


def worker_process_env(redis_url: str, mqtt_port: int, shards: int) -> dict[str, str]:
    """The environment of a real `giftwheel worker` process: short leases, quick takeover."""
    return {
        "GIFTWHEEL_MODE": "development",
        "GIFTWHEEL_REDIS_URL": redis_url,
        "GIFTWHEEL_INGEST__STREAM_SHARDS": str(shards),
        "GIFTWHEEL_WORKER__MQTT__PORT": str(mqtt_port),
        "GIFTWHEEL_WORKER__MQTT__ACCESS_TOKENS": ",".join(DISPATCHER_TOKENS),
        "GIFTWHEEL_WORKER__LEASE_TTL_MS": "1000",
        "GIFTWHEEL_WORKER__CLAIM_IDLE_MS": "1000",
        "GIFTWHEEL_WORKER__READ_BLOCK_MS": "50",
        "GIFTWHEEL_WORKER__SWEEP_INTERVAL_S": "0.2",
    }


@asynccontextmanager
async def worker_running(
    settings: CloudSettings, rules: Rules | Callable[[], Rules]
) -> AsyncIterator[Worker]:
    redis = connect(settings)
    worker = Worker(settings, redis, rules if callable(rules) else lambda: rules)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
        await redis.aclose()
