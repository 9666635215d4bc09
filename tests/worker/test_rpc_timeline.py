"""One RPC timeline: the worker follows ThingsBoard's answers and never races them.

At most one server-side RPC per command is pending in ThingsBoard at any time, checked on the
emulator's own RPC records (``/api/rpc``): each send's RPC has ended before the next one exists.
The emulator and the worker run the same fast timeline (tests/worker/fast_rpc.py).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from cloud.control.holds import Holds
from cloud.ledger import Command, CommandState, DeviceTotals, Ledger
from cloud.worker.commands import CommandSender
from cloud.worker.dispatcher import Dispatcher, Sent
from cloud.worker.metrics import WorkerMetrics
from cloud.worker.rules import parse_rules
from cloud.worker.service import Worker
from devstack.redis_server import RedisServer
from devstack.rpc_sink import RpcSink
from devstack.tb_emulator.server import Emulator
from giftwheel.contracts import EVENTS_STREAM
from giftwheel.contracts.motor import command_id_for
from tests.waiting import wait_until
from tests.worker.conftest import GATEWAY_TOKEN, MOTORS, enqueue, gift, worker_running, worker_settings
from tests.worker.fast_rpc import FAST_RPC, FAST_RPC_SETTINGS, start_fast_rpc_emulator

RULES = parse_rules({"default_device": "motor_01"})
# A pending RPC ends in one of these (TIMEOUT: sent, unanswered; EXPIRED: NO_ACTIVE_CONNECTION).
ENDED = {"SUCCESSFUL", "TIMEOUT", "EXPIRED", "FAILED"}


@pytest.fixture
async def emulator(tmp_path: Path) -> AsyncIterator[Emulator]:
    emu = await start_fast_rpc_emulator(tmp_path)
    yield emu
    await emu.stop()


@pytest.fixture
async def motor(emulator: Emulator) -> AsyncIterator[RpcSink]:
    """The Pi, not connected yet: a test starts it when the motor comes back."""
    pi = RpcSink("127.0.0.1", emulator.mqtt_port, GATEWAY_TOKEN, MOTORS)
    yield pi
    await pi.close()


async def rpc_records(emulator: Emulator, command_id: str) -> list[dict[str, Any]]:
    """The emulator's server-side RPC records of one command, oldest first."""
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{emulator.http_port}") as client:
        records = (await client.get("/api/rpc", params={"device": "motor_01"})).json()
    return [r for r in records if r["params"].get("commandId") == command_id]


def ended_at(record: dict[str, Any]) -> int | None:
    return next((h["ts"] for h in record["history"] if h["status"] in ENDED), None)


def assert_one_pending_at_a_time(records: list[dict[str, Any]]) -> None:
    for earlier, later in itertools.pairwise(records):
        end = ended_at(earlier)
        assert end is not None, f"RPC {earlier['id']} still pending when {later['id']} was created"
        assert later["createdTime"] >= end, f"RPC {later['id']} created while {earlier['id']} was pending"


def settings_for(redis_server: RedisServer, emulator: Emulator, **worker: Any) -> Any:
    return worker_settings(redis_server.url, emulator.mqtt_port, rpc=FAST_RPC_SETTINGS, **worker)


async def wait_delivered(worker: Worker, command_id: str, timeout_s: float = 20) -> Command:
    async def delivered() -> bool:
        command = await worker.ledger.find(command_id)
        return command is not None and command.state is CommandState.DELIVERED

    await wait_until(delivered, timeout_s=timeout_s, what="delivered")
    command = await worker.ledger.find(command_id)
    assert command is not None
    return command


async def test_a_motor_offline_longer_than_the_chain_timeout_gets_one_rpc_at_a_time_and_turns_once(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, motor: RpcSink
) -> None:
    event = gift(gift_name="Heart", diamond=3)
    command_id = command_id_for([event.event_id])
    async with worker_running(settings_for(redis_server, emulator, command_max_attempts=10), RULES) as worker:
        await enqueue(redis, EVENTS_STREAM, [event])

        async def second_rpc() -> bool:
            return len(await rpc_records(emulator, command_id)) >= 2

        # The first RPC's whole life passes with the motor away (NO_ACTIVE_CONNECTION), then it comes back.
        await wait_until(second_rpc, timeout_s=20, what="the command sent again after its first RPC ended")
        await motor.start()
        command = await wait_delivered(worker, command_id)
    records = await rpc_records(emulator, command_id)
    assert_one_pending_at_a_time(records)
    assert [r["status"] for r in records] == ["EXPIRED"] * (len(records) - 1) + ["SUCCESSFUL"]
    assert command.attempts == len(records)
    assert [a.command_id for a in motor.arrivals] == [command_id]  # only the pending one was pushed
    assert await worker.ledger.device_totals("motor_01") == DeviceTotals(accepted=3, sent=3)


async def test_a_dispatcher_reconnect_sends_nothing_again_while_the_old_rpc_may_be_pending(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, motor: RpcSink
) -> None:
    event = gift(gift_name="Heart", diamond=2)
    command_id = command_id_for([event.event_id])
    async with worker_running(settings_for(redis_server, emulator), RULES) as worker:
        await enqueue(redis, EVENTS_STREAM, [event])

        async def first_rpc() -> bool:
            return len(await rpc_records(emulator, command_id)) == 1

        await wait_until(first_rpc, what="the first RPC pending")
        # The link drops: the answer to the pending RPC (NO_ACTIVE_CONNECTION soon) goes to a dead session.
        dispatcher = _dispatcher_device(emulator)
        old = _session_ids(emulator, dispatcher)
        assert emulator.hub.cut_sessions(dispatcher) == 1
        await wait_until(
            lambda: bool(_session_ids(emulator, dispatcher) - old), what="the dispatcher on a new session"
        )

        async def first_over() -> bool:
            return all(ended_at(r) is not None for r in await rpc_records(emulator, command_id))

        await wait_until(first_over, what="the first RPC over")
        await motor.start()
        command = await wait_delivered(worker, command_id)
    records = await rpc_records(emulator, command_id)
    assert_one_pending_at_a_time(records)
    assert [r["status"] for r in records] == ["EXPIRED", "SUCCESSFUL"]
    assert command.attempts == 2
    assert [a.command_id for a in motor.arrivals] == [command_id]


def _session_ids(emulator: Emulator, device: str) -> set[str]:
    return {s.id for s in emulator.hub.sessions.values() if s.device is not None and s.device.name == device}


def _dispatcher_device(emulator: Emulator) -> str:
    """The dispatcher device the worker connected as (it claims one of the shipped tokens)."""
    names = {
        s.device.name for s in emulator.hub.sessions.values() if s.device and s.device.type == "dispatcher"
    }
    assert len(names) == 1, names
    return names.pop()


async def test_a_lost_puback_counts_as_a_send_and_the_command_goes_again_only_after_its_rpc(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, motor: RpcSink
) -> None:
    await motor.start()
    mqtt = settings_for(redis_server, emulator).worker.mqtt.model_dump()
    settings = settings_for(redis_server, emulator, mqtt={**mqtt, "puback_timeout_s": 0.3})
    event = gift(gift_name="Heart", diamond=7)
    command_id = command_id_for([event.event_id])
    async with worker_running(settings, RULES) as worker:
        await wait_until(lambda: worker.dispatcher.is_ready, what="connected")
        emulator.hub.faults.drop_pubacks = 1
        emulator.hub.faults.drop_pubacks_device = _dispatcher_device(emulator)
        # The edge's answer comes after the PUBACK timeout: it goes to the session that timeout closed.
        emulator.hub.faults.gateway_reply_delay_ms = 800
        await enqueue(redis, EVENTS_STREAM, [event])
        await wait_until(lambda: len(motor.arrivals) == 2, timeout_s=20, what="the command again")
        command = await wait_delivered(worker, command_id)
    records = await rpc_records(emulator, command_id)
    assert_one_pending_at_a_time(records)
    assert [a.command_id for a in motor.arrivals] == [command_id, command_id]  # the edge drops the repeat
    assert command.attempts == 2  # the unconfirmed first send counts: ThingsBoard had it
    assert await worker.ledger.device_totals("motor_01") == DeviceTotals(accepted=7, sent=7)


async def test_an_unanswered_command_is_sent_after_each_timeout_then_fails_visibly(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, motor: RpcSink
) -> None:
    await motor.start()
    # The motor gets each RPC but its answer is held back past the chain's timeout: TIMEOUT.
    emulator.hub.faults.gateway_reply_delay_ms = 60_000
    event = gift(gift_name="Heart", diamond=3)
    command_id = command_id_for([event.event_id])
    async with worker_running(settings_for(redis_server, emulator, command_max_attempts=2), RULES) as worker:
        await enqueue(redis, EVENTS_STREAM, [event])

        async def failed() -> bool:
            found = await worker.ledger.find(command_id)
            return found is not None and found.state is CommandState.FAILED

        await wait_until(failed, timeout_s=20, what="command marked failed")
        command = await worker.ledger.find(command_id)
        assert command is not None
        assert command.attempts == 2
        assert command.error == "unanswered after 2 sends: TIMEOUT"
        assert await worker.ledger.device_totals("motor_01") == DeviceTotals(accepted=3, sent=3, failed=3)
        registry = worker.metrics.registry
        assert registry.get_sample_value("giftwheel_worker_commands_failed_total") == 1
        assert registry.get_sample_value("giftwheel_worker_retries_total") == 1
        assert registry.get_sample_value("giftwheel_worker_replies_total", {"kind": "error"}) == 2
    assert_one_pending_at_a_time(await rpc_records(emulator, command_id))
    assert [a.command_id for a in motor.arrivals] == [command_id, command_id]  # sent again, same id


async def test_the_chains_answer_after_the_transports_timeout_still_counts(
    redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    """A transport that gives up before the chain answers (a slow rule engine does that): its
    "timeout" leaves the command waiting; the chain's NO_ACTIVE_CONNECTION, still delivered on the
    same session afterwards, ends the RPC and brings the next send forward."""
    emulator = await start_fast_rpc_emulator(tmp_path, client_rpc_timeout_s=FAST_RPC.chain_timeout_s / 2)
    event = gift(gift_name="Heart", diamond=1)
    command_id = command_id_for([event.event_id])
    try:
        with capture_logs() as logs:
            async with worker_running(settings_for(redis_server, emulator, command_max_attempts=5), RULES):
                await enqueue(redis, EVENTS_STREAM, [event])

                async def second_rpc() -> bool:
                    return len(await rpc_records(emulator, command_id)) >= 2

                await wait_until(second_rpc, timeout_s=20, what="the command sent again")
        records = await rpc_records(emulator, command_id)
    finally:
        await emulator.stop()
    first_answers = [e["error"] for e in logs if e["event"] == "command_error_reply" and e["attempt"] == 1]
    assert first_answers == ["timeout (CLIENT_SIDE_RPC_TIMEOUT)", "NO_ACTIVE_CONNECTION"]
    assert not [e for e in logs if e["event"] == "answer_ignored"]
    assert_one_pending_at_a_time(records)


async def test_answers_for_a_superseded_send_are_ignored(redis_server: RedisServer, redis: Redis) -> None:
    """A send answered after the command was sent again (by another worker that took the shard
    over, or after ThingsBoard's rule engine lagged): whatever it says, the newer send stands."""
    settings = worker_settings(redis_server.url, 1883, rpc=FAST_RPC_SETTINGS).worker
    metrics = WorkerMetrics()
    dispatcher = Dispatcher(
        settings.mqtt, metrics, lambda sent, reply: None, client_id="t", answers_wait_s=1.0
    )  # never connected: answers are handed to the sender directly
    ledger = Ledger(redis, streams=[EVENTS_STREAM], ttl_s=3600)
    sender = CommandSender(ledger, dispatcher, settings, metrics, Holds(redis))
    (command,) = (await ledger.assign(EVENTS_STREAM, "motor_01", {"e": 2}, cap=10, deadline_ms=0)).commands
    deadline = ledger.clock.wall_ms() + 60_000
    await ledger.mark_sent(command, deadline_ms=deadline)
    await ledger.mark_sent(command, deadline_ms=deadline)  # sent again: attempt 2 is pending
    params = {"device": "motor_01", "commandId": command.command_id, "rounds": 2}
    stale = Sent(EVENTS_STREAM, command.command_id, "motor_01", attempt=1)
    for reply in (
        {"error": "TIMEOUT"},
        {"error": "NO_ACTIVE_CONNECTION"},
        {"error": "timeout"},
        {"accepted": True, "commandId": command.command_id, "queuedRounds": 2},
        {"method": "rotate", "params": params},  # the request itself: "no such device"
    ):
        sender.on_reply(stale, reply)
    await sender.drain()
    stored = await ledger.get(EVENTS_STREAM, command.command_id)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.error) == (CommandState.SENT, 2, "")
    assert await ledger.due(EVENTS_STREAM, at_ms=deadline - 1) == []  # not brought forward
    assert metrics.registry.get_sample_value("giftwheel_worker_replies_total", {"kind": "ignored"}) == 5

    sender.on_reply(Sent(EVENTS_STREAM, command.command_id, "motor_01", attempt=2), {"error": "TIMEOUT"})
    await sender.drain()
    assert await ledger.due(EVENTS_STREAM, at_ms=ledger.clock.wall_ms() + 1_000) == [command.command_id]
