"""A delivered command whose done the cloud has not seen is asked after again (a re-ask).

The worker, the emulator running the shipped chain and a stand-in Pi (devstack.rpc_sink.RpcSink,
which answers a re-ask with the outcome a test sets) are real; the done's own path (edge outbox ->
ThingsBoard -> webhook) is tests/e2e/test_lost_done_reask.py's. A re-ask never turns anything: it is
a rotate with ``reask``, which the edge never queues.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from cloud.control.holds import Holds
from cloud.ledger import Command, CommandState, DeviceTotals
from cloud.worker.rules import parse_rules
from cloud.worker.service import Worker
from devstack.redis_server import RedisServer
from devstack.rpc_sink import RpcSink
from devstack.tb_emulator.server import Emulator
from giftwheel.contracts import EVENTS_STREAM
from giftwheel.contracts.control import HoldRecord
from giftwheel.contracts.motor import CommandOutcome, command_id_for
from tests.waiting import wait_until
from tests.worker.conftest import GATEWAY_TOKEN, MOTORS, enqueue, gift, worker_running, worker_settings

RULES = parse_rules(
    {
        "default_device": "motor_01",
        "rules": [{"name": "lions", "match": {"gift_name": ["Lion"]}, "device": "motor_02"}],
    }
)
# Far shorter than production's minute, so a test sees several re-asks in a second.
CHECK_S = 0.2


def settings(redis_server: RedisServer, emulator: Emulator, **worker: Any) -> Any:
    return worker_settings(redis_server.url, emulator.mqtt_port, command_done_check_s=CHECK_S, **worker)


@pytest.fixture
async def pi(emulator: Emulator) -> AsyncIterator[RpcSink]:
    sink = RpcSink("127.0.0.1", emulator.mqtt_port, GATEWAY_TOKEN, MOTORS)
    await sink.start()
    yield sink
    await sink.close()


async def command_in(worker: Worker, command_id: str, *states: CommandState) -> Command:
    async def there() -> bool:
        command = await worker.ledger.find(command_id)
        return command is not None and command.state in states

    await wait_until(there, timeout_s=20, what=f"{command_id} {'/'.join(states)}")
    command = await worker.ledger.find(command_id)
    assert command is not None
    return command


def answers(worker: Worker, outcome: str) -> float:
    return float(worker.metrics.reask_answers.labels(outcome)._value.get())


async def test_a_delivered_command_is_asked_after_until_its_done_arrives_and_turns_once(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, pi: RpcSink
) -> None:
    event = gift(gift_name="Heart", diamond=3)
    command_id = command_id_for([event.event_id])
    async with worker_running(settings(redis_server, emulator), RULES) as worker:
        await enqueue(redis, EVENTS_STREAM, [event])
        await command_in(worker, command_id, CommandState.DELIVERED)

        async def asked_twice() -> bool:
            return answers(worker, CommandOutcome.PENDING.value) >= 2

        # Still queued or turning on the edge: it waits, and is asked again at its next check.
        await wait_until(asked_twice, what="two re-asks answered pending")
        command = await command_in(worker, command_id, CommandState.DELIVERED)
        assert command.attempts >= 3  # the first send and each re-ask count
        assert [(a.command_id, a.rounds) for a in pi.reasks()][:2] == [(command_id, 3)] * 2

        pi.outcomes[command_id] = CommandOutcome.DONE

        async def done_sent_again() -> bool:
            return answers(worker, CommandOutcome.DONE.value) >= 1

        await wait_until(done_sent_again, what="the edge sent its done again")
        assert (await worker.ledger.find(command_id)).state is CommandState.DELIVERED  # type: ignore[union-attr]
        # The done that re-ask sent arrives on the normal path (the webhook's Ledger.mark_done).
        assert await worker.ledger.mark_done(command_id) is CommandState.DONE
        await worker.sender.drain()
        far_future = worker.ledger.clock.wall_ms() + 10**9
        assert command_id not in await worker.ledger.due(EVENTS_STREAM, at_ms=far_future)
        assert await worker.ledger.mark_done(command_id) is CommandState.DONE  # counted once
        assert await worker.ledger.device_totals("motor_01") == DeviceTotals(accepted=3, sent=3, done=3)
    assert [a.command_id for a in pi.rotates()] == [command_id]  # one rotate that may turn: the first


async def test_a_command_still_pending_is_asked_after_at_doubling_intervals(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, pi: RpcSink
) -> None:
    # A backlog queued behind one motor must not cost a re-ask per command every check: each next
    # re-ask waits as long as the command has waited so far.
    event = gift(gift_name="Heart", diamond=2)
    command_id = command_id_for([event.event_id])
    async with worker_running(settings(redis_server, emulator), RULES) as worker:
        await enqueue(redis, EVENTS_STREAM, [event])
        delivered = await command_in(worker, command_id, CommandState.DELIVERED)
        delivered_at = delivered.timestamps[CommandState.DELIVERED.value]

        async def asked_three_times() -> bool:
            return answers(worker, CommandOutcome.PENDING.value) >= 3

        await wait_until(asked_three_times, what="three re-asks answered pending")
        # Re-asked at 1, 2 and 4 checks after its delivery at the earliest, so next due at 8 at the
        # earliest; at a fixed cadence it would be due again one check after the third (4 at most
        # on a quiet box).
        check_ms = int(CHECK_S * 1000)
        assert command_id not in await worker.ledger.due(EVENTS_STREAM, at_ms=delivered_at + 8 * check_ms - 1)
    assert [a.command_id for a in pi.rotates()] == [command_id]  # re-asks never turn anything


async def test_a_held_motor_s_commands_are_not_asked_after_until_its_resume(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, pi: RpcSink
) -> None:
    # A held motor's queue waits for the resume: each of its commands would answer pending. The
    # check is long enough here for the hold to be placed before the first one.
    check_s = 2.0
    event = gift(gift_name="Heart", diamond=1)
    command_id = command_id_for([event.event_id])
    worker_config = worker_settings(redis_server.url, emulator.mqtt_port, command_done_check_s=check_s)
    async with worker_running(worker_config, RULES) as worker:
        await enqueue(redis, EVENTS_STREAM, [event])
        delivered = await command_in(worker, command_id, CommandState.DELIVERED)
        delivered_at = delivered.timestamps[CommandState.DELIVERED.value]
        holds = Holds(redis)
        await holds.place("motor_01", HoldRecord(by="ops", at_ms=worker.ledger.clock.wall_ms()))

        async def postponed() -> bool:
            # Due at its first check until a sweep handles it; then at twice that at the earliest.
            at_ms = delivered_at + int(2 * check_s * 1000) - 1
            return command_id not in await worker.ledger.due(EVENTS_STREAM, at_ms=at_ms)

        await wait_until(postponed, timeout_s=20, what="the held motor's command postponed")
        assert pi.reasks() == []
        assert (await command_in(worker, command_id, CommandState.DELIVERED)).attempts == 1

        await holds.lift("motor_01", known=MOTORS)

        async def asked() -> bool:
            return answers(worker, CommandOutcome.PENDING.value) >= 1

        await wait_until(asked, timeout_s=20, what="a re-ask after the resume")
    assert [a.command_id for a in pi.reasks()][:1] == [command_id]


async def test_a_reask_cancels_what_a_stop_cleared_and_fails_what_the_edge_lost(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, pi: RpcSink
) -> None:
    cleared_event, lost_event = gift(gift_name="Heart", diamond=2), gift(gift_name="Lion", diamond=4)
    cleared, lost = command_id_for([cleared_event.event_id]), command_id_for([lost_event.event_id])
    async with worker_running(settings(redis_server, emulator), RULES) as worker:
        await enqueue(redis, EVENTS_STREAM, [cleared_event, lost_event])
        await command_in(worker, cleared, CommandState.DELIVERED)
        await command_in(worker, lost, CommandState.DELIVERED)
        # The Pi comes back without its buffer, but for the stop it carried out meanwhile.
        await pi.close()
        fresh = RpcSink("127.0.0.1", emulator.mqtt_port, GATEWAY_TOKEN, MOTORS)
        fresh.outcomes[cleared] = CommandOutcome.CLEARED
        await fresh.start()
        try:
            cancelled = await command_in(worker, cleared, CommandState.CANCELLED)
            failed = await command_in(worker, lost, CommandState.FAILED)
        finally:
            await fresh.close()
    assert (cancelled.cancelled_by, cancelled.cancel_reason) == ("edge", "cleared from the queue by a stop")
    assert failed.error.startswith("its edge has no record of it")
    assert fresh.rotates() == []  # asked after, never sent to turn again
    assert {a.command_id for a in fresh.reasks()} == {cleared, lost}
    totals = await worker.ledger.device_totals("motor_02")
    assert (totals.failed, totals.outstanding) == (4, 0)


async def test_a_command_never_reported_done_still_fails_at_the_done_timeout(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, pi: RpcSink
) -> None:
    event = gift(gift_name="Heart", diamond=1)
    command_id = command_id_for([event.event_id])
    async with worker_running(settings(redis_server, emulator, command_done_timeout_s=3), RULES) as worker:
        await enqueue(redis, EVENTS_STREAM, [event])
        failed = await command_in(worker, command_id, CommandState.FAILED)
    assert failed.error == "no completion feedback within 3.0 s"
    assert answers(worker, CommandOutcome.PENDING.value) >= 1  # asked after until then
    assert [a.command_id for a in pi.rotates()] == [command_id]
