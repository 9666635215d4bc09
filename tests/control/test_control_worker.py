"""A worker's control consumer, in process, against the emulated ThingsBoard and an RPC sink for the
Pi: control RPCs take the dispatcher's path, a dead worker's request is claimed, a redelivered one
is not carried out twice, and held work left without a hold is dispatched by the sweep."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from redis.asyncio import Redis

from cloud.control.client import ControlClient
from cloud.ledger import CommandState
from cloud.worker.control_consumer import done_key
from cloud.worker.rules import parse_rules
from devstack.redis_server import RedisServer
from devstack.rpc_sink import RpcSink
from devstack.tb_emulator.server import Emulator
from giftwheel.contracts import EVENTS_STREAM
from giftwheel.contracts.control import (
    CONTROL_FIELD,
    CONTROL_GROUP,
    CONTROL_STREAM,
    HOLDS_KEY,
    ControlAction,
    ControlRequest,
    new_request_id,
)
from tests.waiting import wait_until
from tests.worker.conftest import GATEWAY_TOKEN, MOTORS, enqueue, gift, worker_running, worker_settings
from tests.worker.fast_rpc import FAST_RPC_SETTINGS, start_fast_rpc_emulator

RULES = parse_rules({"default_device": "motor_01", "command_rounds_max": 100})
# A request a dead worker left is claimed after 0.5 s; the sink answers at once.
CONTROL = {"rpc_wait_s": 0.2, "claim_idle_ms": 500, "read_block_ms": 50}


def request(action: ControlAction, device: str) -> ControlRequest:
    return ControlRequest(request_id=new_request_id(), action=action, device=device, by="t", at_ms=1)


async def left_by_a_dead_worker(redis: Redis, control: ControlRequest) -> None:
    """Queued and read by a worker that then died: pending, never acked."""
    await redis.xgroup_create(CONTROL_STREAM, CONTROL_GROUP, id="0", mkstream=True)
    await redis.xadd(CONTROL_STREAM, {CONTROL_FIELD: control.to_json()})
    await redis.xreadgroup(CONTROL_GROUP, "dead", {CONTROL_STREAM: ">"}, count=1)


async def all_acked(redis: Redis) -> bool:
    summary: Any = await redis.xpending(CONTROL_STREAM, CONTROL_GROUP)
    return int(summary["pending"]) == 0


async def test_control_rpcs_take_the_dispatcher_path_and_gate_the_gifts(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    settings = worker_settings(redis_server.url, emulator.mqtt_port, control=CONTROL)
    client = ControlClient(redis)
    async with worker_running(settings, RULES) as worker:
        held = await client.submit(request(ControlAction.HOLD, "motor_01"), timeout_s=10)
        assert held.ok, held
        assert [(a.device, a.method, a.params) for a in sink.arrivals] == [
            ("motor_01", "hold", {"device": "motor_01"})
        ]
        await enqueue(redis, EVENTS_STREAM, [gift(diamond=4)])

        async def recorded_held() -> bool:
            return (await worker.ledger.device_totals("motor_01")).held == 4

        await wait_until(recorded_held, what="the gift recorded held")
        assert sink.rotates() == []

        resumed = await client.submit(request(ControlAction.RESUME, "motor_01"), timeout_s=10)
        assert resumed.ok, resumed
        assert resumed.motors[0].requeued_commands == 1
        await wait_until(lambda: sink.rounds_by_device() == {"motor_01": 4}, what="the held gift sent")

        ghost = await client.submit(request(ControlAction.HOLD, "ghost"), timeout_s=10)
        (motor,) = ghost.motors
        assert not motor.ok
        assert motor.edge == {"error": "UNKNOWN_DEVICE", "detail": "ThingsBoard has no device of that name"}


async def test_a_dead_workers_request_is_claimed_and_carried_out(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    control = request(ControlAction.HOLD, "*")
    await left_by_a_dead_worker(redis, control)
    settings = worker_settings(redis_server.url, emulator.mqtt_port, control=CONTROL)
    async with worker_running(settings, RULES):
        outcome = await ControlClient(redis).wait(control.request_id, timeout_s=10)
        assert outcome.ok, outcome
        assert [m.device for m in outcome.motors] == ["motor_01"]  # the devices the rules name
        assert await redis.hkeys(HOLDS_KEY) == ["*"]
        await wait_until(lambda: all_acked(redis), what="acked")


async def test_a_request_already_carried_out_is_acked_not_redone(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    control = request(ControlAction.HOLD, "motor_01")
    await left_by_a_dead_worker(redis, control)
    await redis.set(done_key(control.request_id), "{}")  # it died after storing the outcome
    settings = worker_settings(redis_server.url, emulator.mqtt_port, control=CONTROL)
    async with worker_running(settings, RULES):
        await wait_until(lambda: all_acked(redis), what="the redelivered request acked")
    assert sink.arrivals == []
    assert await redis.hlen(HOLDS_KEY) == 0


async def test_held_work_without_a_hold_is_dispatched_by_the_sweep(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    settings = worker_settings(redis_server.url, emulator.mqtt_port, control=CONTROL)
    async with worker_running(settings, RULES) as worker:
        # Created held just as a resume lifted the hold: no hold is left to lift.
        assignment = await worker.ledger.assign(
            EVENTS_STREAM, "motor_01", {"e-race": 3}, cap=100, deadline_ms=0, held=True
        )
        (command,) = assignment.commands
        assert command.state is CommandState.HELD
        await wait_until(lambda: sink.rounds_by_device() == {"motor_01": 3}, what="the sweep sent it")
        assert [a.command_id for a in sink.rotates()] == [command.command_id]


async def test_a_resume_the_estop_refuses_leaves_that_motor_held(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    rules = parse_rules({"default_device": "motor_01", "devices": {"motor_02": {}}})
    settings = worker_settings(redis_server.url, emulator.mqtt_port, control=CONTROL)
    client = ControlClient(redis)
    async with worker_running(settings, rules) as worker:
        assert (await client.submit(request(ControlAction.HOLD, "*"), timeout_s=10)).ok
        sink.estop.add("motor_01")
        resumed = await client.submit(request(ControlAction.RESUME, "*"), timeout_s=10)
        assert not resumed.ok
        by_device = {m.device: m for m in resumed.motors}
        assert by_device["motor_02"].ok
        assert not by_device["motor_01"].ok
        assert "emergency stop" in by_device["motor_01"].detail
        assert await redis.hkeys(HOLDS_KEY) == ["motor_01"]
        await enqueue(redis, EVENTS_STREAM, [gift(diamond=2)])

        async def recorded_held() -> bool:
            return (await worker.ledger.device_totals("motor_01")).held == 2

        await wait_until(recorded_held, what="motor_01 still held in the cloud")


async def test_a_hold_while_the_pi_is_offline_holds_in_the_cloud_and_says_so(
    redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    # ThingsBoard answers NO_ACTIVE_CONNECTION when the chain's RPC expires: 2 s on this timeline.
    emulator = await start_fast_rpc_emulator(tmp_path)
    settings = worker_settings(
        redis_server.url,
        emulator.mqtt_port,
        rpc=FAST_RPC_SETTINGS,
        control={"rpc_wait_s": 5, "claim_idle_ms": 11_000, "read_block_ms": 50},
    )
    client = ControlClient(redis)
    pi = RpcSink("127.0.0.1", emulator.mqtt_port, GATEWAY_TOKEN, MOTORS)
    try:
        async with worker_running(settings, RULES) as worker:
            held = await client.submit(request(ControlAction.HOLD, "motor_01"), timeout_s=10)
            (motor,) = held.motors
            assert not motor.ok
            assert motor.detail.startswith("edge not reached (NO_ACTIVE_CONNECTION")
            assert await redis.hkeys(HOLDS_KEY) == ["motor_01"]
            await enqueue(redis, EVENTS_STREAM, [gift(diamond=5)])

            async def recorded_held() -> bool:
                return (await worker.ledger.device_totals("motor_01")).held == 5

            await wait_until(recorded_held, what="the gift held in the cloud while the Pi is away")
            await pi.start()  # the Pi is back
            resumed = await client.submit(request(ControlAction.RESUME, "motor_01"), timeout_s=10)
            assert resumed.ok, resumed
            await wait_until(lambda: pi.rounds_by_device() == {"motor_01": 5}, what="the held gift sent once")
    finally:
        await pi.close()
        await emulator.stop()


async def test_names_dead_workers_left_in_the_control_group_are_forgotten(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    await redis.xgroup_create(CONTROL_STREAM, CONTROL_GROUP, id="0", mkstream=True)
    await redis.xgroup_createconsumer(CONTROL_STREAM, CONTROL_GROUP, "gone")
    control = {"rpc_wait_s": 0.01, "claim_idle_ms": 100, "read_block_ms": 50}
    settings = worker_settings(redis_server.url, emulator.mqtt_port, control=control)
    await asyncio.sleep(1.05)  # idle ten times claim_idle_ms

    async def forgotten() -> bool:
        names = [c["name"] for c in await redis.xinfo_consumers(CONTROL_STREAM, CONTROL_GROUP)]
        return "gone" not in names

    async with worker_running(settings, RULES):
        await wait_until(forgotten, what="the idle name dropped")


async def test_an_invalid_request_is_refused_to_its_caller_and_acked_requests_are_trimmed(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    # An action this worker does not know (an API newer than it), and an entry no one can answer.
    request_id = new_request_id()
    unknown = {"requestId": request_id, "action": "explode", "device": "motor_01", "by": "t", "atMs": 1}
    await redis.xadd(CONTROL_STREAM, {CONTROL_FIELD: "not json"})
    await redis.xadd(CONTROL_STREAM, {CONTROL_FIELD: orjson.dumps(unknown).decode()})
    # Every acknowledged request is trimmed at once (retention 0).
    control = {**CONTROL, "retention_s": 0, "trim_interval_s": 0.05}
    settings = worker_settings(redis_server.url, emulator.mqtt_port, control=control)
    client = ControlClient(redis)
    async with worker_running(settings, RULES):
        # Answered: without the refusal this waits out its timeout and raises ControlNotConfirmed.
        refusal = await client.wait(request_id, timeout_s=10)
        assert (refusal.ok, refusal.action, refusal.device, refusal.motors) == (False, None, None, [])
        assert refusal.refused is not None
        assert refusal.refused.startswith("invalid control request, not carried out: action: Input should be")
        assert sink.arrivals == []
        # The worker goes on with the next request.
        held = await client.submit(request(ControlAction.HOLD, "motor_01"), timeout_s=10)
        assert held.ok, held
        await wait_until(lambda: all_acked(redis), what="every entry acked")

        async def trimmed() -> bool:
            return await redis.xlen(CONTROL_STREAM) == 0

        await wait_until(trimmed, what="the acknowledged requests trimmed")
