"""While ThingsBoard is away the worker reads nothing: the backlog stays in Redis, not in memory;
a worker cut off alone hands its shards to one that can reach ThingsBoard."""

from __future__ import annotations

import asyncio

from redis.asyncio import Redis

from cloud.ingest.queue import GiftQueue
from cloud.worker.rules import parse_rules
from devstack.ports import free_port
from devstack.redis_server import RedisServer
from devstack.rpc_sink import RpcSink
from giftwheel.contracts import EVENTS_STREAM, WORKER_GROUP
from tests.waiting import wait_until
from tests.worker.conftest import (
    GATEWAY_TOKEN,
    MOTORS,
    enqueue,
    gift,
    start_emulator,
    worker_running,
    worker_settings,
)

RULES = parse_rules({"default_device": "motor_01"})


async def _group(redis: Redis) -> dict[str, int]:
    for group in await redis.xinfo_groups(EVENTS_STREAM):
        if group["name"] == WORKER_GROUP:
            return {"lag": int(group["lag"] or 0), "pending": int(group["pending"])}
    return {}


async def test_no_reads_while_thingsboard_is_unreachable_then_drain_on_reconnect(
    redis_server: RedisServer, redis: Redis
) -> None:
    port = free_port()  # nothing listens here yet
    settings = worker_settings(redis_server.url, port)
    async with worker_running(settings, RULES) as worker:
        await wait_until(lambda: bool(worker.leases.owned), what="shard owned")
        await enqueue(redis, EVENTS_STREAM, [gift(gift_name="Heart", diamond=2) for _ in range(50)])
        await asyncio.sleep(0.8)  # several reconnect attempts with backoff
        failures = worker.metrics.registry.get_sample_value("giftwheel_worker_mqtt_connect_failures_total")
        assert (failures or 0) >= 1
        assert await _group(redis) == {"lag": 50, "pending": 0}
        emulator = await start_emulator(port)
        sink = RpcSink("127.0.0.1", port, GATEWAY_TOKEN, MOTORS)
        await sink.start()
        try:
            await wait_until(lambda: sink.rounds_by_device() == {"motor_01": 100}, what="backlog delivered")
            await wait_until(lambda: _is_drained(redis), what="group drained")
        finally:
            await sink.close()
            await emulator.stop()


async def _is_drained(redis: Redis) -> bool:
    return await _group(redis) == {"lag": 0, "pending": 0}


async def test_a_worker_cut_off_from_thingsboard_hands_its_shards_to_one_that_is_not(
    redis_server: RedisServer, redis: Redis
) -> None:
    emulator = await start_emulator()
    sink = RpcSink("127.0.0.1", emulator.mqtt_port, GATEWAY_TOKEN, MOTORS)
    await sink.start()
    shards = 4
    cut_off = worker_settings(redis_server.url, free_port(), shards=shards, release_shards_after_s=0.5)
    connected = worker_settings(redis_server.url, emulator.mqtt_port, shards=shards)
    queue = GiftQueue(redis, shards=shards, dedupe_ttl_s=3600)
    events = [gift(gift_name="Heart", diamond=1) for _ in range(40)]
    try:
        async with worker_running(cut_off, RULES) as lonely, worker_running(connected, RULES) as healthy:
            await queue.append(events)
            await wait_until(
                lambda: len(healthy.leases.owned) == shards, what="all shards with the connected worker"
            )
            assert lonely.leases.owned == set()
            await wait_until(lambda: sink.rounds_by_device() == {"motor_01": 40}, what="every gift delivered")
    finally:
        await sink.close()
        await emulator.stop()


async def test_a_refused_access_token_is_retried_with_backoff_and_nothing_is_read(
    redis_server: RedisServer, redis: Redis
) -> None:
    emulator = await start_emulator()
    mqtt = {"port": emulator.mqtt_port, "access_token": "not-a-known-token", "reconnect_max_s": 0.2}
    settings = worker_settings(redis_server.url, emulator.mqtt_port, mqtt=mqtt)
    try:
        async with worker_running(settings, RULES) as worker:
            await wait_until(lambda: bool(worker.leases.owned), what="shard owned")
            await enqueue(redis, EVENTS_STREAM, [gift(gift_name="Heart") for _ in range(5)])
            registry = worker.metrics.registry
            await wait_until(
                lambda: (registry.get_sample_value("giftwheel_worker_mqtt_connect_failures_total") or 0) >= 3,
                what="repeated refusals",
            )
            assert registry.get_sample_value("giftwheel_worker_mqtt_connected") == 0
            assert await _group(redis) == {"lag": 5, "pending": 0}
    finally:
        await emulator.stop()
