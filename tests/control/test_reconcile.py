"""The edge follows the cloud's holds: two workers in process against the emulated ThingsBoard and
an RPC sink for the Pi; what each motor reports is written to its live state as the feedback
webhook would. (tests/e2e/test_control_chaos.py has it resume a real edge after an outage.)"""

from __future__ import annotations

import asyncio
import contextlib
import time

from redis.asyncio import Redis

from cloud.api.settings import RealtimeSettings
from cloud.control.holds import HeldMotors
from cloud.realtime.live_state import LiveState
from cloud.worker.reconcile import Mismatch, mismatches
from cloud.worker.rules import parse_rules
from devstack.redis_server import RedisServer
from devstack.rpc_sink import RpcSink
from devstack.tb_emulator.server import Emulator
from giftwheel.contracts.control import HOLDS_KEY, HoldRecord
from giftwheel.contracts.motor import RpcMethod
from tests.waiting import wait_until
from tests.worker.conftest import worker_running, worker_settings

RULES = parse_rules({"default_device": "motor_01", "command_rounds_max": 100})
CONTROL = {"rpc_wait_s": 0.5, "claim_idle_ms": 2_000, "read_block_ms": 50}
RECONCILE = {"interval_s": 0.1, "settle_s": 0.3, "min_interval_s": 60, "lease_s": 1}
NOW = 1_800_000_000_000


def test_mismatches_follow_the_holds() -> None:
    held = HeldMotors({"a": HoldRecord(by="ops", at_ms=1), "b": HoldRecord(by="ops", at_ms=1)})
    live = {
        "a": {"state": "running", "ts": NOW},  # missed its hold
        "b": {"state": "stopped_by_estop", "ts": NOW},  # only its button releases it
        "c": {"state": "held", "ts": NOW},  # missed its resume
        "d": {"state": "held", "ts": NOW - 200_000},  # offline: judged when it reports again
        "e": {"state": "idle", "ts": NOW},
    }
    assert mismatches(live, held, now_ms=NOW, fresh_within_ms=150_000) == [
        Mismatch("a", RpcMethod.HOLD),
        Mismatch("c", RpcMethod.RESUME),
    ]
    every = HeldMotors({"*": HoldRecord(by="ops", at_ms=1)})
    assert [m.device for m in mismatches(live, every, now_ms=NOW, fresh_within_ms=150_000)] == ["a", "e"]


async def report(redis: Redis, device: str, state: str) -> None:
    now = time.time_ns() // 1_000_000
    await LiveState(redis, RealtimeSettings()).merge(device, {"state": state}, now, latest_ms=now)


async def test_one_worker_brings_a_motor_back_to_the_clouds_hold(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    settings = worker_settings(redis_server.url, emulator.mqtt_port, control=CONTROL, reconcile=RECONCILE)
    async with contextlib.AsyncExitStack() as workers:
        for _ in range(2):
            await workers.enter_async_context(worker_running(settings, RULES))
        # Held in the cloud while the Pi was away; back, it reports running.
        await redis.hset(HOLDS_KEY, "motor_01", HoldRecord(by="ops", at_ms=1).to_json())
        await report(redis, "motor_01", "running")
        await wait_until(lambda: len(sink.arrivals) > 0, what="a hold sent")
        await asyncio.sleep(0.5)  # a second sender (or a repeat) would show now
        assert [(a.device, a.method) for a in sink.arrivals] == [("motor_01", "hold")]

        # The hold lifted while the Pi was away; it reports held.
        await redis.hdel(HOLDS_KEY, "motor_01")
        await redis.delete("giftwheel:reconcile:sent:motor_01")  # past min_interval_s
        await report(redis, "motor_01", "held")
        await wait_until(lambda: len(sink.arrivals) > 1, what="a resume sent")
        await asyncio.sleep(0.5)
        assert [(a.device, a.method) for a in sink.arrivals] == [("motor_01", "hold"), ("motor_01", "resume")]
