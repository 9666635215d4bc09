"""Beyond one Redis: gifts from the ingest API over a sharded stream on a real 3-master Redis Cluster,
through two workers, to the device connections on the emulated ThingsBoard."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from cloud.api.app import create_app
from cloud.ledger import Ledger
from cloud.redis_client import connect
from cloud.settings import CloudSettings
from cloud.worker.rules import parse_rules
from cloud.worker.service import Worker
from devstack.asgi_server import serve
from devstack.redis_cluster import RedisCluster
from devstack.rpc_sink import RpcSink
from devstack.tb_emulator.server import Emulator
from giftwheel.contracts import event_streams
from tests.waiting import wait_until
from tests.worker.conftest import DISPATCHER_TOKENS

API_KEY = "cluster-test-key-0123456789"
SHARDS = 6
RULES = parse_rules({"default_device": "motor_01", "rules": [
    {"name": "roses", "match": {"gift_name": "Rose"}, "device": "motor_02"},
]})  # fmt: skip


@pytest.fixture(scope="module")
def cluster() -> Iterator[RedisCluster]:
    with RedisCluster(3) as started:
        yield started


def settings_for(cluster: RedisCluster, mqtt_port: int) -> CloudSettings:
    return CloudSettings.model_validate(
        {
            "redis_url": cluster.url,
            "api_keys": API_KEY,
            "redis": {"cluster": True},
            "ingest": {"stream_shards": SHARDS},
            "worker": {
                "lease_ttl_ms": 600,
                "read_block_ms": 50,
                "mqtt": {"port": mqtt_port, "access_tokens": DISPATCHER_TOKENS},
            },
        }
    )


@pytest.fixture
async def api(cluster: RedisCluster, emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        serve(create_app(settings_for(cluster, emulator.mqtt_port))) as url,
        httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {API_KEY}"}) as client,
    ):
        yield client


@pytest.mark.slow
async def test_gifts_from_the_api_reach_the_devices_once_over_a_redis_cluster(
    cluster: RedisCluster, emulator: Emulator, sink: RpcSink, api: httpx.AsyncClient
) -> None:
    settings = settings_for(cluster, emulator.mqtt_port)
    redis = connect(settings)
    streams = event_streams(SHARDS)
    slots = {await redis.cluster_keyslot(s) for s in streams}  # type: ignore[union-attr]
    owners = {redis.get_node_from_key(s).port for s in streams}  # type: ignore[union-attr]
    assert len(slots) == SHARDS
    assert len(owners) > 1, "the shards should spread over several masters"
    clients = [connect(settings) for _ in range(2)]
    workers = [Worker(settings, client, lambda: RULES) for client in clients]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(w.run(stop)) for w in workers]
    try:
        events = [
            {
                "eventId": f"cluster:{i}",
                "event": "gift",
                "platform": "tiktok",
                "userId": f"u{i % 17}",
                "giftName": "Rose" if i % 2 else "Heart",
                "diamond": 1 + i % 5,
                "quantity": 1,
                "timestamp": int(time.time() * 1000),
            }
            for i in range(300)
        ]
        for i in range(0, len(events), 100):
            reply = await api.post("/v1/events/batch", json={"events": events[i : i + 100]})
            assert reply.status_code in (200, 202, 207), reply.text
        single = await api.post("/v1/events", json={**events[0], "eventId": "cluster:single"})
        assert single.status_code == 202, single.text
        expected = {"motor_01": 0, "motor_02": 0}
        for e in [*events, {**events[0]}]:
            expected["motor_02" if e["giftName"] == "Rose" else "motor_01"] += int(e["diamond"])
        await wait_until(lambda: sink.rounds_by_device() == expected, timeout_s=30, what="all rounds")
        ledger = Ledger(redis, streams=streams, ttl_s=3600)
        carried: list[str] = []
        for command_id in {a.command_id for a in sink.arrivals}:
            command = await ledger.find(command_id)
            assert command is not None
            carried.extend(command.event_ids)
        assert sorted(carried) == sorted([*(str(e["eventId"]) for e in events), "cluster:single"])
        # Shares even out over heartbeats: the worker that started first may hold every shard until
        # its next one, and a busy box can finish the 301 events before that.
        await wait_until(lambda: all(w.leases.owned for w in workers), timeout_s=10, what="both own shards")
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        for client in [redis, *clients]:
            await client.aclose()
