"""Gifts from the stream to the target device's MQTT connection, through the emulated ThingsBoard."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from structlog.testing import capture_logs

from cloud.ledger import CommandState, DeviceTotals
from cloud.worker.dispatcher import Sent, is_own_request
from cloud.worker.dlq import DeadLetters
from cloud.worker.rules import parse_rules
from cloud.worker.rules_source import RulesSource
from devstack.redis_server import RedisServer
from devstack.rpc_sink import RpcSink
from devstack.tb_emulator.server import Emulator
from giftwheel.contracts import EVENT_FIELD, EVENTS_STREAM, WORKER_GROUP
from giftwheel.contracts.motor import command_id_for
from tests.waiting import wait_until
from tests.worker.conftest import enqueue, gift, worker_running, worker_settings

RULES = parse_rules(
    {
        "default_device": "motor_01",
        "command_rounds_max": 5000,
        "devices": {"motor_02": {"command_rounds_max": 50}},
        "rules": [
            {"name": "roses", "match": {"gift_name": "Rose"}, "device": "motor_02", "multiplier": 2},
        ],
    }
)


async def _drained(redis: Redis) -> bool:
    """The group exists and has read and acked everything on the stream."""
    if not await redis.exists(EVENTS_STREAM):
        return False
    for group in await redis.xinfo_groups(EVENTS_STREAM):
        if group["name"] == WORKER_GROUP:
            return int(group["lag"] or 0) == 0 and int(group["pending"]) == 0
    return False


async def test_single_gift_reaches_the_target_device_with_its_rounds(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    settings = worker_settings(redis_server.url, emulator.mqtt_port)
    event = gift(gift_name="Rose", diamond=3, quantity=2)
    async with worker_running(settings, RULES) as worker:
        await enqueue(redis, EVENTS_STREAM, [event])
        await wait_until(lambda: len(sink.arrivals) == 1, what="rotate at motor_02")
        (arrival,) = sink.arrivals
        assert (arrival.device, arrival.method, arrival.rounds) == ("motor_02", "rotate", 12)
        assert arrival.command_id == command_id_for([event.event_id])

        async def delivered() -> bool:
            command = await worker.ledger.find(arrival.command_id)
            return command is not None and command.state is CommandState.DELIVERED

        await wait_until(delivered, what="ledger: delivered")
        await wait_until(lambda: _drained(redis), what="entry acked")
        assert await worker.ledger.device_totals("motor_02") == DeviceTotals(accepted=12, sent=12)


async def test_a_burst_is_coalesced_per_device_and_every_event_counted_once(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    settings = worker_settings(redis_server.url, emulator.mqtt_port, batch_max_entries=500)
    roses = [gift(gift_name="Rose", diamond=1) for _ in range(1000)]
    lions = [gift(gift_name="Lion", diamond=2, quantity=3) for _ in range(1000)]
    await enqueue(redis, EVENTS_STREAM, [e for pair in zip(roses, lions, strict=True) for e in pair])
    async with worker_running(settings, RULES) as worker:
        await wait_until(lambda: _drained(redis), what="burst drained")
        await wait_until(lambda: len({a.command_id for a in sink.arrivals}) == 8, what="all commands")
        commands = {a.command_id: a for a in sink.arrivals}
        # 2000 entries in batches of 500: one command per device per batch.
        assert len(commands) == 8
        per_device = sink.rounds_by_device()
        assert per_device["motor_01"] == 1000 * 6
        # Each batch held 250 roses (500 rounds) for motor_02, capped at 50 per command.
        assert per_device["motor_02"] == 4 * 50
        carried: list[str] = []
        for command_id in commands:
            command = await worker.ledger.find(command_id)
            assert command is not None
            carried.extend(command.event_ids)
        assert sorted(carried) == sorted(e.event_id for e in roses + lions)
        totals = await worker.ledger.device_totals("motor_02")
        assert (totals.accepted, totals.capped) == (200, 2000 - 200)


async def test_an_entry_that_is_not_a_gift_event_is_dead_lettered_with_the_reason(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    settings = worker_settings(redis_server.url, emulator.mqtt_port)
    await redis.xadd(EVENTS_STREAM, {EVENT_FIELD: '{"eventId": "x", "diamond": "lots"}'})
    await redis.xadd(EVENTS_STREAM, {"other": "field"})
    good = gift(gift_name="Heart", diamond=4)
    await enqueue(redis, EVENTS_STREAM, [good])
    letters = DeadLetters(redis)
    async with worker_running(settings, RULES):
        await wait_until(lambda: len(sink.arrivals) == 1, what="good gift delivered")
        await wait_until(lambda: _drained(redis), what="all acked")
    dead = await letters.read()
    assert len(dead) == 2
    assert all(d.reason.startswith("not a GiftEvent:") for d in dead)
    assert "diamond" in dead[0].reason
    assert sink.arrivals[0].rounds == 4


async def test_limits_skip_gifts_visibly_and_a_redelivery_keeps_the_decision(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    settings = worker_settings(
        redis_server.url, emulator.mqtt_port, limits={"user_max_gifts": 2, "user_window_s": 600}
    )
    spammer = [gift(user_id="spammer", gift_name="Heart", diamond=1) for _ in range(5)]
    other = gift(user_id="someone", gift_name="Heart", diamond=10)
    await enqueue(redis, EVENTS_STREAM, [*spammer, other])
    async with worker_running(settings, RULES) as worker:
        await wait_until(lambda: _drained(redis), what="drained")
        await wait_until(lambda: bool(sink.arrivals), what="command")
        decisions = await worker.ledger.decisions(EVENTS_STREAM, [e.event_id for e in spammer])
        skipped = [e for e, d in decisions.items() if d.startswith("skip:")]
        assert len(skipped) == 3
        assert all(decisions[e] == "skip:user_rate_limit" for e in skipped)
        assert sink.rounds_by_device() == {"motor_01": 12}
        # The same entries delivered again (e.g. replayed from the DLQ) do not count twice.
        await enqueue(redis, EVENTS_STREAM, [*spammer, other])
        await wait_until(lambda: _drained(redis), what="replay drained")
        assert await worker.ledger.device_totals("motor_01") == DeviceTotals(accepted=12, sent=12)


async def test_rules_reloaded_in_a_running_worker_and_a_bad_file_keeps_them(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink, tmp_path: Path
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("default_device: motor_01\n")
    rules = RulesSource(path)
    watcher = asyncio.create_task(rules.watch(0.02))
    settings = worker_settings(redis_server.url, emulator.mqtt_port)
    try:
        async with worker_running(settings, lambda: rules.current):
            await enqueue(redis, EVENTS_STREAM, [gift(gift_name="Heart", diamond=1)])
            await wait_until(lambda: [a.device for a in sink.arrivals] == ["motor_01"], what="first rules")

            path.write_text("default_device: motor_02\nmultiplier: 5\n")
            await wait_until(lambda: rules.current.spec.default_device == "motor_02", what="reload")
            await enqueue(redis, EVENTS_STREAM, [gift(gift_name="Heart", diamond=1)])
            await wait_until(lambda: len(sink.arrivals) == 2, what="second gift")
            assert (sink.arrivals[1].device, sink.arrivals[1].rounds) == ("motor_02", 5)

            path.write_text("default_device: motor_01\nmultiplier: -1\n")
            await wait_until(lambda: rules.last_error is not None, what="bad file noticed")
            assert "multiplier: Input should be greater than 0" in (rules.last_error or "")
            await enqueue(redis, EVENTS_STREAM, [gift(gift_name="Heart", diamond=2)])
            await wait_until(lambda: len(sink.arrivals) == 3, what="third gift")
            assert (sink.arrivals[2].device, sink.arrivals[2].rounds) == ("motor_02", 10)
    finally:
        watcher.cancel()


async def test_a_command_for_a_device_thingsboard_does_not_know_fails_at_once(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    # Retries would be visible: another send a second after the answer, up to three in all.
    settings = worker_settings(redis_server.url, emulator.mqtt_port, command_max_attempts=3)
    # ThingsBoard knows no device of this name: the chain's change-originator step fails and its
    # Failure route answers the dispatcher with the request itself.
    rules = parse_rules({"default_device": "ghost_motor"})
    event = gift(gift_name="Heart", diamond=3)
    command_id = command_id_for([event.event_id])
    async with worker_running(settings, rules) as worker:
        with capture_logs() as logs:
            await enqueue(redis, EVENTS_STREAM, [event])

            async def failed() -> bool:
                found = await worker.ledger.find(command_id)
                return found is not None and found.state is CommandState.FAILED

            await wait_until(failed, what="command marked failed")
            await asyncio.sleep(1.5)  # past the pause after an error answer: no resend may follow
        command = await worker.ledger.find(command_id)
        assert command is not None
        assert command.state is CommandState.FAILED
        assert command.attempts == 1
        assert command.error == (
            "unknown device: ThingsBoard has no device named 'ghost_motor' "
            "(the rule chain answered with the request itself)"
        )
        assert await worker.ledger.device_totals("ghost_motor") == DeviceTotals(accepted=3, sent=3, failed=3)
        registry = worker.metrics.registry
        assert registry.get_sample_value("giftwheel_worker_commands_failed_total") == 1
        assert registry.get_sample_value("giftwheel_worker_retries_total") == 0
        assert registry.get_sample_value("giftwheel_worker_replies_total", {"kind": "error"}) == 1
        assert (registry.get_sample_value("giftwheel_worker_publish_seconds_count") or 0) == 1
        assert await _drained(redis)
    failures = [e for e in logs if e["event"] == "command_failed"]
    assert [(e["command_id"], e["device"], e["log_level"]) for e in failures] == [
        (command_id, "ghost_motor", "error")
    ]
    assert failures[0]["reason"].startswith("unknown device")
    assert sink.arrivals == []


def test_only_the_request_itself_is_taken_for_an_unknown_device() -> None:
    sent = Sent("giftwheel:events", "c-0123456789abcdef", "motor_09", attempt=1)
    params = {"device": "motor_09", "commandId": "c-0123456789abcdef", "rounds": 3}
    assert is_own_request(sent, {"method": "rotate", "params": params})
    others: list[dict[str, Any]] = [
        {"accepted": True, "commandId": "c-0123456789abcdef", "queuedRounds": 3},
        {"error": "UNKNOWN_DEVICE", "detail": "no motor named 'motor_09' on this gateway"},
        {"error": "NO_ACTIVE_CONNECTION"},
        {"method": "rotate", "params": {**params, "commandId": "c-fedcba9876543210"}},  # another command
        {"method": "rotate", "params": {**params, "device": "motor_01"}},
        {"method": "stop", "params": params},
        {"method": "rotate", "params": "c-0123456789abcdef"},
    ]
    assert not any(is_own_request(sent, reply) for reply in others)
