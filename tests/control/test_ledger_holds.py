"""The ledger's held and cancelled states: what a held device's gifts become, and that it still balances."""

from __future__ import annotations

from redis.asyncio import Redis

from cloud.ledger import CommandState, DeviceTotals, Ledger
from giftwheel.clock import ManualClock
from giftwheel.contracts import EVENTS_STREAM

S = EVENTS_STREAM


def ledger(redis: Redis) -> Ledger:
    return Ledger(redis, streams=[S], ttl_s=3600, clock=ManualClock())


def balances(totals: DeviceTotals) -> bool:
    parts = totals.done + totals.held + totals.cancelled + totals.failed + totals.outstanding
    return totals.accepted == parts and totals.outstanding >= 0


async def test_a_held_device_gets_held_commands_that_are_not_due(redis: Redis) -> None:
    book = ledger(redis)
    (command,) = (await book.assign(S, "m", {"e1": 3}, cap=100, deadline_ms=0, held=True)).commands
    assert command.state is CommandState.HELD
    assert await book.due(S, at_ms=book.clock.wall_ms() + 10**9) == []
    assert await book.held_devices(S) == {"m"}
    assert await book.held_count("m") == 1
    totals = await book.device_totals("m")
    assert totals == DeviceTotals(accepted=3, held=3)
    assert balances(totals)


async def test_requeue_makes_held_commands_due_now_with_the_same_ids(redis: Redis) -> None:
    book = ledger(redis)
    held = (await book.assign(S, "m", {"e1": 2}, cap=100, deadline_ms=0, held=True)).commands[0]
    queued = (await book.assign(S, "other", {"e2": 1}, cap=100, deadline_ms=10**15, held=False)).commands[0]
    assert await book.requeue_held("m") == 1
    assert await book.requeue_held("m") == 0  # again: nothing left to move
    assert await book.due(S, at_ms=book.clock.wall_ms()) == [held.command_id]
    again = await book.get(S, held.command_id)
    assert again is not None
    assert again.state is CommandState.QUEUED
    assert await book.held_devices(S) == set()
    assert (await book.device_totals("m")) == DeviceTotals(accepted=2)
    assert queued.state is CommandState.QUEUED


async def test_cancel_records_who_and_why_and_balances(redis: Redis) -> None:
    book = ledger(redis)
    first = (await book.assign(S, "m", {"e1": 2}, cap=100, deadline_ms=0, held=True)).commands[0]
    sent = (await book.assign(S, "m", {"e2": 5}, cap=100, deadline_ms=0)).commands[0]
    await book.mark_sent(sent, deadline_ms=10**15)
    assert await book.cancel_held("m", by="ops", reason="jammed") == 1
    # The edge's stop cleared the sent one: cancelled too, once.
    assert await book.cancel_commands("m", [sent.command_id, "c-0000000000"], by="ops", reason="jammed") == 1
    assert await book.cancel_commands("m", [sent.command_id], by="ops", reason="jammed") == 0
    assert await book.cancel_commands("x", [first.command_id], by="ops", reason="") == 0  # not its device
    for command_id in (first.command_id, sent.command_id):
        command = await book.get(S, command_id)
        assert command is not None
        assert command.state is CommandState.CANCELLED
        assert (command.cancelled_by, command.cancel_reason) == ("ops", "jammed")
        assert "cancelled" in command.timestamps
    totals = await book.device_totals("m")
    assert totals == DeviceTotals(accepted=7, sent=5, cancelled=7)
    assert balances(totals)
    assert await book.held_devices(S) == set()


async def test_a_due_command_of_a_held_device_is_held_and_a_requeued_one_counts_its_sends_afresh(
    redis: Redis,
) -> None:
    book = ledger(redis)
    command = (await book.assign(S, "m", {"e1": 4}, cap=100, deadline_ms=0)).commands[0]
    await book.mark_sent(command, deadline_ms=0)
    sent = await book.get(S, command.command_id)
    assert sent is not None
    assert await book.hold(sent)
    assert (await book.device_totals("m")).held == 4
    await book.requeue_held("m")
    requeued = await book.get(S, command.command_id)
    assert requeued is not None
    assert (requeued.attempts, requeued.attempts_since_requeue) == (1, 0)
    await book.mark_sent(requeued, deadline_ms=0)
    # A second send does not count the command's rounds as sent twice.
    assert (await book.device_totals("m")) == DeviceTotals(accepted=4, sent=4)


async def test_the_edge_reporting_done_closes_a_held_or_cancelled_command(redis: Redis) -> None:
    book = ledger(redis)
    held = (await book.assign(S, "m", {"e1": 1}, cap=100, deadline_ms=0, held=True)).commands[0]
    gone = (await book.assign(S, "m", {"e2": 2}, cap=100, deadline_ms=0, held=True)).commands[0]
    await book.cancel_commands("m", [gone.command_id], by="ops", reason="")
    assert await book.mark_done(held.command_id) is CommandState.DONE
    assert await book.mark_done(gone.command_id) is CommandState.DONE
    totals = await book.device_totals("m")
    assert totals == DeviceTotals(accepted=3, done=3)
    assert await book.held_devices(S) == set()


async def test_cancel_outstanding_takes_the_devices_open_commands_only(redis: Redis) -> None:
    book = ledger(redis)
    queued = (await book.assign(S, "m", {"e1": 1}, cap=100, deadline_ms=5)).commands[0]
    delivered = (await book.assign(S, "m", {"e2": 2}, cap=100, deadline_ms=5)).commands[0]
    await book.mark_delivered(S, delivered.command_id, deadline_ms=10**15, device="m")
    other = (await book.assign(S, "n", {"e3": 4}, cap=100, deadline_ms=5)).commands[0]
    assert await book.cancel_outstanding("m", by="ops", reason="stop") == 2
    assert await book.cancel_outstanding("m", by="ops", reason="stop") == 0
    for command_id in (queued.command_id, delivered.command_id):
        command = await book.get(S, command_id)
        assert command is not None
        assert command.state is CommandState.CANCELLED
    assert await book.due(S, at_ms=10**16) == [other.command_id]
    assert balances(await book.device_totals("m"))
    assert (await book.device_totals("m")).cancelled == 3
