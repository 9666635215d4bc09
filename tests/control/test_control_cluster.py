"""Control on a real 3-master Redis Cluster: the held commands of several stream shards (each shard's
ledger keys in its own slot) are held, requeued and cancelled across the shards."""

from __future__ import annotations

import pytest

from cloud.control.client import ControlClient
from cloud.redis_client import connect
from cloud.settings import CloudSettings
from devstack.redis_cluster import RedisCluster
from devstack.rpc_sink import RpcSink
from devstack.tb_emulator.server import Emulator
from giftwheel.contracts import EVENT_FIELD, event_stream, shard_of
from giftwheel.contracts.control import ALL_MOTORS, ControlAction, ControlRequest, new_request_id
from tests.waiting import wait_until
from tests.worker.conftest import DISPATCHER_TOKENS, gift, worker_running
from tests.worker.test_cluster import RULES, cluster

__all__ = ["cluster"]  # the module's 3-master cluster fixture

SHARDS = 4


def request(action: ControlAction, device: str) -> ControlRequest:
    return ControlRequest(request_id=new_request_id(), action=action, device=device, by="ops", at_ms=1)


@pytest.mark.slow
async def test_hold_resume_and_cancel_across_shards_on_a_cluster(
    cluster: RedisCluster, emulator: Emulator, sink: RpcSink
) -> None:
    settings = CloudSettings.model_validate(
        {
            "mode": "development",
            "redis_url": cluster.url,
            "redis": {"cluster": True},
            "ingest": {"stream_shards": SHARDS},
            "worker": {
                "lease_ttl_ms": 600,
                "read_block_ms": 50,
                "sweep_interval_s": 0.1,
                "mqtt": {"port": emulator.mqtt_port, "access_tokens": DISPATCHER_TOKENS},
                "control": {"read_block_ms": 50},
            },
        }
    )
    redis = connect(settings)
    control = ControlClient(redis)
    try:
        async with worker_running(settings, RULES) as worker:
            assert (await control.submit(request(ControlAction.HOLD, ALL_MOTORS), timeout_s=10)).ok
            events = [gift(gift_name="Rose" if i % 2 else "Heart", diamond=1 + i) for i in range(12)]
            for event in events:
                stream = event_stream(shard_of(event.event_id, SHARDS), SHARDS)
                await redis.xadd(stream, {EVENT_FIELD: event.to_json()})
            expected = {"motor_01": 0, "motor_02": 0}
            for event in events:
                expected["motor_02" if event.gift_name == "Rose" else "motor_01"] += event.diamond

            async def all_held() -> bool:
                held = [(await worker.ledger.device_totals(d)).held for d in expected]
                return held == list(expected.values())

            await wait_until(all_held, 20, "every gift recorded held, on every shard")
            assert sink.rotates() == []

            resumed = await control.submit(request(ControlAction.RESUME, "motor_01"), timeout_s=10)
            assert resumed.ok, resumed
            await wait_until(
                lambda: sink.rounds_by_device() == {"motor_01": expected["motor_01"]}, 20, "motor_01's gifts"
            )
            cancelled = await control.submit(request(ControlAction.CANCEL, "motor_02"), timeout_s=10)
            assert cancelled.ok, cancelled
            totals = await worker.ledger.device_totals("motor_02")
            assert (totals.held, totals.cancelled) == (0, expected["motor_02"])
            assert sink.rounds_by_device() == {"motor_01": expected["motor_01"]}
    finally:
        await redis.aclose()
