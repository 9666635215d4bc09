"""The command ledger: one command per event ever, whatever the grouping; states and counters balance."""

from __future__ import annotations

import asyncio
import random

from redis.asyncio import Redis

from cloud.ledger import CommandState, DeviceTotals, Ledger
from giftwheel.clock import ManualClock
from giftwheel.contracts import EVENTS_STREAM
from giftwheel.contracts.motor import command_id_for

S = EVENTS_STREAM


def ledger(redis: Redis) -> Ledger:
    return Ledger(redis, streams=[S], ttl_s=3600, clock=ManualClock())


async def test_assign_creates_a_queued_command_named_by_its_events(redis: Redis) -> None:
    book = ledger(redis)
    result = await book.assign(
        S, "motor_01", {"e1": 2, "e2": 3}, cap=100, deadline_ms=book.clock.wall_ms() + 1000
    )
    (command,) = result.commands
    assert command.command_id == command_id_for(["e2", "e1"])
    assert (command.device, command.rounds, command.event_ids) == ("motor_01", 5, ("e1", "e2"))
    assert command.state is CommandState.QUEUED
    assert "queued" in command.timestamps
    assert await book.decisions(S, ["e1", "e2", "e3"]) == {"e1": command.command_id, "e2": command.command_id}
    assert await book.device_totals("motor_01") == DeviceTotals(accepted=5)
    assert await book.devices() == {"motor_01"}


async def test_same_grouping_again_returns_the_same_command(redis: Redis) -> None:
    book = ledger(redis)
    first = await book.assign(S, "m", {"e1": 1, "e2": 1}, cap=100, deadline_ms=0)
    again = await book.assign(S, "m", {"e2": 1, "e1": 1}, cap=100, deadline_ms=0)
    assert [c.command_id for c in again.commands] == [c.command_id for c in first.commands]
    assert (await book.device_totals("m")).accepted == 2


async def test_regrouped_redelivery_never_puts_an_event_in_a_second_command(redis: Redis) -> None:
    book = ledger(redis)
    first = await book.assign(S, "m", {"e1": 1, "e2": 1}, cap=100, deadline_ms=0)
    # A reclaimed batch holds e2 again, now together with e3 and e4.
    later = await book.assign(S, "m", {"e2": 1, "e3": 1, "e4": 1}, cap=100, deadline_ms=0)
    ids = {c.command_id: c for c in later.commands}
    assert first.commands[0].command_id in ids
    fresh = ids[command_id_for(["e3", "e4"])]
    assert fresh.event_ids == ("e3", "e4")
    assert fresh.rounds == 2
    assert (await book.device_totals("m")).accepted == 4


async def test_concurrent_overlapping_groupings_assign_each_event_exactly_once(redis: Redis) -> None:
    book = ledger(redis)
    events = [f"e{i}" for i in range(60)]
    rng = random.Random(7)
    groupings = [dict.fromkeys(rng.sample(events, 15), 1) for _ in range(40)]
    results = await asyncio.gather(*(book.assign(S, "m", g, cap=10_000, deadline_ms=0) for g in groupings))
    owner: dict[str, str] = {}
    for result in results:
        for command in result.commands:
            for event in command.event_ids:
                assert owner.setdefault(event, command.command_id) == command.command_id
    covered = {e for g in groupings for e in g}
    assert set(owner) == covered
    assert (await book.device_totals("m")).accepted == len(covered)


async def test_cap_limits_rounds_and_records_the_capped_rest(redis: Redis) -> None:
    book = ledger(redis)
    result = await book.assign(S, "m", {"e1": 700, "e2": 600}, cap=1000, deadline_ms=0)
    assert result.commands[0].rounds == 1000
    assert result.commands[0].requested_rounds == 1300
    assert await book.device_totals("m") == DeviceTotals(accepted=1000, capped=300)


async def test_skipped_events_stay_skipped(redis: Redis) -> None:
    book = ledger(redis)
    await book.skip(S, {"e1": "user_rate_limit"})
    await book.skip(S, {"e1": "something else"})  # the first decision stands
    result = await book.assign(S, "m", {"e1": 1, "e2": 1}, cap=100, deadline_ms=0)
    assert result.skipped == {"e1": "user_rate_limit"}
    assert [c.event_ids for c in result.commands] == [("e2",)]


async def test_lifecycle_counters_balance_and_due_finds_overdue_commands(redis: Redis) -> None:
    book = ledger(redis)
    (a,) = (await book.assign(S, "m", {"a": 4}, cap=100, deadline_ms=book.clock.wall_ms() + 60_000)).commands
    (b,) = (await book.assign(S, "m", {"b": 6}, cap=100, deadline_ms=book.clock.wall_ms() + 60_000)).commands
    assert await book.due(S, at_ms=book.clock.wall_ms()) == []

    assert await book.mark_sent(a, deadline_ms=book.clock.wall_ms() - 1) is CommandState.SENT
    assert await book.mark_sent(b, deadline_ms=book.clock.wall_ms() + 60_000) is CommandState.SENT
    assert await book.due(S, at_ms=book.clock.wall_ms()) == [a.command_id]
    assert (
        await book.mark_delivered(S, a.command_id, deadline_ms=book.clock.wall_ms() + 60_000)
        is CommandState.DELIVERED
    )
    assert await book.mark_done(a.command_id) is CommandState.DONE
    assert await book.mark_failed(S, b.command_id, "unanswered") is CommandState.FAILED
    # A late completion corrects a command given up on.
    totals = await book.device_totals("m")
    assert totals == DeviceTotals(accepted=10, sent=10, done=4, failed=6)
    assert await book.mark_done(b.command_id) is CommandState.DONE
    totals = await book.device_totals("m")
    assert totals == DeviceTotals(accepted=10, sent=10, done=10, failed=0)
    assert totals.outstanding == 0
    stored = await book.find(b.command_id)
    assert stored is not None
    assert stored.state is CommandState.DONE
    assert stored.attempts == 1
    assert stored.error == "unanswered"
    assert {"queued", "sent", "failed", "done"} <= set(stored.timestamps)
    assert await book.due(S, at_ms=book.clock.wall_ms() + 10**9) == []


async def test_done_is_final_and_unknown_commands_are_none(redis: Redis) -> None:
    book = ledger(redis)
    (a,) = (await book.assign(S, "m", {"a": 1}, cap=100, deadline_ms=0)).commands
    await book.mark_done(a.command_id)
    assert await book.mark_sent(a, deadline_ms=0) is CommandState.DONE
    assert await book.mark_failed(S, a.command_id, "late") is CommandState.DONE
    assert await book.mark_done("c-0000000000000000") is None
    assert await book.find("c-0000000000000000") is None


async def test_error_answers_keep_the_command_sent_without_counting_a_send(redis: Redis) -> None:
    book = ledger(redis)
    (a,) = (await book.assign(S, "m", {"a": 1}, cap=100, deadline_ms=0)).commands
    await book.mark_sent(a, deadline_ms=book.clock.wall_ms() + 60_000)
    await book.note_error(S, a.command_id, "NO_ACTIVE_CONNECTION", retry_at_ms=book.clock.wall_ms() - 1)
    stored = await book.get(S, a.command_id)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.error) == (CommandState.SENT, 1, "NO_ACTIVE_CONNECTION")
    assert await book.due(S, at_ms=book.clock.wall_ms()) == [a.command_id]


async def test_an_answer_for_a_superseded_send_moves_nothing(redis: Redis) -> None:
    book = ledger(redis)
    (a,) = (await book.assign(S, "m", {"a": 2}, cap=100, deadline_ms=0)).commands
    later = book.clock.wall_ms() + 60_000
    await book.mark_sent(a, deadline_ms=later)
    await book.mark_sent(a, deadline_ms=later)  # sent again: the first send's answers are stale
    assert not await book.note_error(S, a.command_id, "TIMEOUT", retry_at_ms=0, answering=1)
    assert await book.mark_delivered(S, a.command_id, deadline_ms=None, answering=1) is CommandState.SENT
    assert await book.mark_failed(S, a.command_id, "unknown device", answering=1) is CommandState.SENT
    stored = await book.get(S, a.command_id)
    assert stored is not None
    assert (stored.state, stored.attempts, stored.error) == (CommandState.SENT, 2, "")
    assert await book.due(S, at_ms=book.clock.wall_ms()) == []  # its deadline stands
    # the current send's answer counts; None keeps the deadline
    assert await book.note_error(S, a.command_id, "timeout", retry_at_ms=None, answering=2)
    assert await book.due(S, at_ms=book.clock.wall_ms()) == []
    moved = await book.mark_delivered_many(S, [(a.command_id, "m")], deadline_ms=later, answering=[2])
    assert [(m.state, m.moved) for m in moved] == [(CommandState.DELIVERED, True)]


async def test_the_same_heartbeat_delivered_concurrently_closes_each_command_once(redis: Redis) -> None:
    book = ledger(redis)
    (a,) = (await book.assign(S, "m", {"a": 3}, cap=100, deadline_ms=0)).commands
    await book.mark_sent(a, deadline_ms=book.clock.wall_ms() + 60_000)
    closed = await asyncio.gather(*(book.close_reported("m", [a.command_id]) for _ in range(8)))
    assert sorted(len(c) for c in closed) == [0] * 7 + [1]
    assert await book.device_totals("m") == DeviceTotals(accepted=3, sent=3, done=3)


async def test_records_are_stamped_on_the_ledgers_clock(redis: Redis) -> None:
    clock = ManualClock(wall_ms=1_800_000_000_000)
    book = Ledger(redis, streams=[S], ttl_s=3600, clock=clock)
    (a,) = (await book.assign(S, "m", {"a": 1}, cap=100, deadline_ms=clock.wall_ms() + 1000)).commands
    clock.advance(2.5)
    await book.mark_sent(a, deadline_ms=clock.wall_ms() + 1000)
    clock.advance(0.25)
    await book.mark_done(a.command_id)
    stored = await book.find(a.command_id)
    assert stored is not None
    assert stored.timestamps == {
        "queued": 1_800_000_000_000,
        "sent": 1_800_000_002_500,
        "done": 1_800_000_002_750,
    }
