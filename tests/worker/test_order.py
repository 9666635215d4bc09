"""Per-shard order: every device receives the commands built from one stream shard in stream order."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from redis.asyncio import Redis

from cloud.ingest.queue import GiftQueue
from cloud.worker.rules import parse_rules
from devstack.redis_server import RedisServer
from devstack.rpc_sink import RpcSink
from devstack.tb_emulator.server import Emulator
from tests.waiting import wait_until
from tests.worker.conftest import gift, worker_running, worker_settings

RULES = parse_rules({"default_device": "motor_01", "rules": [
    {"name": "roses", "match": {"gift_name": "Rose"}, "device": "motor_02"},
]})  # fmt: skip


async def test_two_workers_keep_each_shards_order_per_device(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    shards = 4
    settings = worker_settings(redis_server.url, emulator.mqtt_port, shards=shards, batch_max_entries=7)
    events = [gift(event_id=f"order:{i:05d}", gift_name="Rose" if i % 3 else "Heart") for i in range(600)]
    index = {e.event_id: i for i, e in enumerate(events)}
    queue = GiftQueue(redis, shards=shards, dedupe_ttl_s=3600)
    async with worker_running(settings, RULES) as one, worker_running(settings, RULES) as two:
        await wait_until(
            lambda: len(one.leases.owned) == len(two.leases.owned) == shards // 2, what="shards split"
        )
        for i in range(0, len(events), 3):  # a steady stream, appended in order
            await queue.append(events[i : i + 3])
            await asyncio.sleep(0.002)
        expected = {"motor_01": 200, "motor_02": 400}
        await wait_until(lambda: sink.rounds_by_device() == expected, timeout_s=30, what="all rounds")
        # Per (device, shard): the commands' events, in the order the commands reached the device.
        seen: dict[tuple[str, str], list[list[int]]] = defaultdict(list)
        first_arrivals = list({a.command_id: a for a in sink.arrivals}.values())
        for arrival in first_arrivals:
            command = await one.ledger.find(arrival.command_id)
            assert command is not None
            seen[(arrival.device, command.stream)].append(sorted(index[e] for e in command.event_ids))
    assert len(seen) == 2 * shards
    for (device, stream), commands in seen.items():
        flat = [i for command in commands for i in command]
        assert flat == sorted(flat), f"{device} got {stream}'s commands out of order"
