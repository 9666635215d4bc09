"""The local Redis ledger and outbox against a real redis-server."""

from __future__ import annotations

import redis as redis_lib

from devstack.redis_server import RedisServer
from edge.buffer.ledger import CommandLedger, Recalled, SubmitStatus
from edge.buffer.outbox import Outbox
from giftwheel.contracts.motor import CommandOutcome, MotorState

CID_A = "c-aaaaaaaa"
CID_B = "c-bbbbbbbb"
PPR = 3200  # pulses per round


def test_submit_dedupes_by_command_id_and_keeps_order(ledger: CommandLedger, outbox: Outbox) -> None:
    assert ledger.submit("m1", CID_A, 3, None).status is SubmitStatus.ACCEPTED
    second = ledger.submit("m1", CID_B, 2, 12.5)
    assert (second.status, second.queued_rounds) == (SubmitStatus.ACCEPTED, 5)
    again = ledger.submit("m1", CID_A, 3, None)
    assert (again.status, again.queued_rounds) == (SubmitStatus.DUPLICATE, 5)
    # The same commandId on another motor is another command.
    assert ledger.submit("m2", CID_A, 1, None).status is SubmitStatus.ACCEPTED

    first = ledger.begin("m1")
    assert first is not None
    assert (first.command_id, first.rounds, first.speed_rpm, first.rounds_done, first.pulses_done) == (
        CID_A, 3, None, 0, 0
    )  # fmt: skip
    received = [e for e in outbox.read(100) if e.device == "m1" and "receivedTs" in e.values]
    assert [e.values["commandId"] for e in received] == [CID_A, CID_B, CID_A]  # 2 queued, 1 started


def test_rounds_progress_survives_and_finishing_moves_to_the_next(ledger: CommandLedger) -> None:
    ledger.submit("m1", CID_A, 2, None)
    ledger.submit("m1", CID_B, 1, 30.0)
    assert ledger.begin("m1") is not None
    assert ledger.progress("m1", CID_A, PPR // 2, PPR) is False
    assert ledger.status("m1").rounds_completed == 0  # half a round is progress, not a round
    assert ledger.progress("m1", CID_A, PPR + 160, PPR) is False
    assert ledger.progress("m1", CID_A, PPR // 2, PPR) is False  # an older checkpoint changes nothing
    # A restart (new begin) resumes the same command with its progress, to the pulse.
    resumed = ledger.begin("m1")
    assert resumed is not None
    assert (resumed.command_id, resumed.rounds_done, resumed.pulses_done) == (CID_A, 1, PPR + 160)
    assert ledger.status("m1").rounds_completed == 1
    assert ledger.progress("m1", CID_A, 2 * PPR, PPR) is True
    nxt = ledger.begin("m1")
    assert nxt is not None
    assert (nxt.command_id, nxt.speed_rpm, nxt.rounds_done, nxt.pulses_done) == (CID_B, 30.0, 0, 0)
    assert ledger.progress("m1", CID_B, PPR, PPR) is True
    assert ledger.begin("m1") is None
    status = ledger.status("m1")
    assert (status.state, status.queued_rounds, status.rounds_completed, status.commands_done) == (
        MotorState.IDLE, 0, 3, 2
    )  # fmt: skip


def test_finish_writes_the_last_checkpoint_and_begins_the_next_in_one_script(
    ledger: CommandLedger, outbox: Outbox
) -> None:
    ledger.submit("m1", CID_A, 2, None)
    ledger.submit("m1", CID_B, 1, 30.0)
    ledger.begin("m1")
    nxt = ledger.finish("m1", CID_A, 2 * PPR, PPR, begin_next=True)
    assert nxt is not None
    assert (nxt.command_id, nxt.rounds, nxt.speed_rpm, nxt.rounds_done, nxt.pulses_done) == (
        CID_B, 1, 30.0, 0, 0
    )  # fmt: skip
    entries = [e.values for e in outbox.read(100)][2:]  # after the two queued entries
    assert [(v["commandId"], v["commandDone"], v["state"]) for v in entries] == [
        (CID_A, False, "running"),  # started
        (CID_A, True, "running"),  # done, with another command queued
        (CID_B, False, "running"),  # started by the same script
    ]
    # A held motor finishes its command and begins nothing; its next command waits in the queue.
    assert ledger.finish("m1", CID_B, PPR, PPR, begin_next=False) is None
    status = ledger.status("m1")
    assert (status.state, status.rounds_completed, status.commands_done, status.current_command_id) == (
        MotorState.IDLE, 3, 2, None
    )  # fmt: skip


def test_finish_after_a_stop_or_a_finished_write_changes_nothing_but_begins(ledger: CommandLedger) -> None:
    ledger.submit("m1", CID_A, 2, None)
    ledger.begin("m1")
    # The checkpoint writer got the last pulse in first: the command is done once, not twice.
    assert ledger.progress("m1", CID_A, 2 * PPR, PPR) is True
    ledger.submit("m1", CID_B, 1, None)
    nxt = ledger.finish("m1", CID_A, 2 * PPR, PPR, begin_next=True)
    assert nxt is not None
    assert nxt.command_id == CID_B
    assert ledger.status("m1").commands_done == 1
    # A stop cleared it meanwhile: its rounds are not counted, and an empty queue begins nothing.
    ledger.clear("m1")
    assert ledger.finish("m1", CID_B, PPR, PPR, begin_next=True) is None
    status = ledger.status("m1")
    assert (status.state, status.rounds_completed, status.commands_done) == (MotorState.STOPPED, 2, 1)


def test_clear_reports_what_was_dropped_and_late_rounds_are_ignored(ledger: CommandLedger) -> None:
    ledger.submit("m1", CID_A, 5, None)
    ledger.submit("m1", CID_B, 4, None)
    ledger.begin("m1")
    ledger.progress("m1", CID_A, PPR, PPR)
    cleared = ledger.clear("m1")
    assert (cleared.command_ids, cleared.rounds) == ([CID_A, CID_B], 8)
    assert ledger.progress("m1", CID_A, 2 * PPR, PPR) is None
    status = ledger.status("m1")
    assert (status.state, status.queued_rounds, status.rounds_completed) == (MotorState.STOPPED, 0, 1)
    # A re-sent rotate for a stopped command is still a duplicate: stop means stop.
    assert ledger.submit("m1", CID_A, 5, None).status is SubmitStatus.DUPLICATE


def test_queue_limit_refuses_instead_of_growing(sync_redis: redis_lib.Redis) -> None:
    ledger = CommandLedger(sync_redis, dedupe_ttl_s=60, max_queued_rounds=10)
    assert ledger.submit("m1", CID_A, 8, None).status is SubmitStatus.ACCEPTED
    full = ledger.submit("m1", CID_B, 3, None)
    assert (full.status, full.queued_rounds) == (SubmitStatus.QUEUE_FULL, 8)
    # Refused is not seen: the same command is accepted once there is room.
    ledger.clear("m1")
    assert ledger.submit("m1", CID_B, 3, None).status is SubmitStatus.ACCEPTED


def test_outbox_keeps_order_strictly_increasing_ts_and_acks_exactly(
    ledger: CommandLedger, outbox: Outbox
) -> None:
    ledger.submit("m1", CID_A, 3, None)
    ledger.begin("m1")
    for n in range(1, 4):
        ledger.progress("m1", CID_A, n * PPR, PPR)
    ledger.report("m1")
    entries = outbox.read(100)
    assert len(entries) == 6
    ts = [e.ts for e in entries]
    assert ts == sorted(ts)
    assert len(set(ts)) == len(ts)
    assert [e.values.get("roundsCompleted") for e in entries[2:5]] == [1, 2, 3]
    assert entries[4].values["commandDone"] is True
    assert entries[4].values["state"] == "idle"
    outbox.ack(entries[:4])
    assert [e.entry_id for e in outbox.read(100)] == [e.entry_id for e in entries[4:]]
    assert len(outbox) == 2


def test_ledger_survives_a_local_redis_restart() -> None:
    with RedisServer(appendonly=True) as server:
        client = redis_lib.Redis.from_url(server.url, decode_responses=True, socket_timeout=2)
        ledger = CommandLedger(client, dedupe_ttl_s=60, max_queued_rounds=100)
        ledger.submit("m1", CID_A, 4, None)
        ledger.begin("m1")
        ledger.progress("m1", CID_A, PPR + 1, PPR)
        server.restart()  # the scripts' SHA cache is gone too; redis-py reloads them
        resumed = ledger.begin("m1")
        assert resumed is not None
        assert (resumed.rounds_done, resumed.pulses_done) == (1, PPR + 1)
        assert ledger.submit("m1", CID_A, 4, None).status is SubmitStatus.DUPLICATE
        assert len(Outbox(client)) == 4
        client.close()


def test_progress_telemetry_is_throttled_but_start_and_done_carry_exact_totals(
    sync_redis: redis_lib.Redis, outbox: Outbox
) -> None:
    now = [1_000_000]
    ledger = CommandLedger(
        sync_redis,
        dedupe_ttl_s=60,
        max_queued_rounds=10_000,
        progress_interval_s=0.2,
        clock_ms=lambda: now[0],
    )
    rounds = 1000
    ledger.submit("m1", CID_A, rounds, None)
    ledger.begin("m1")
    for n in range(1, rounds + 1):
        now[0] += 1  # 1,000 rounds/s: one second of turning
        ledger.progress("m1", CID_A, n * PPR, PPR)
    status = ledger.status("m1")
    assert (status.rounds_completed, status.commands_done) == (rounds, 1)  # every round persisted

    entries = [e.values for e in outbox.read(10_000)]
    progress = [v for v in entries if "roundsCompleted" in v and v["commandDone"] is False]
    start = [v for v in entries if v.get("state") == "running" and "startedTs" in v]
    done = [v for v in entries if v.get("commandDone") is True]
    assert len(entries) == 2 + len(progress) + 1  # queued, started, progress, done
    assert len(progress) == 4  # one per 200 ms after the start, the fifth coalesced into the done
    assert [v["commandRoundsDone"] for v in progress] == [200, 400, 600, 800]
    assert start == [entries[1]]
    assert start[0]["commandRoundsDone"] == 0
    assert done == [entries[-1]]
    assert (done[0]["commandId"], done[0]["commandRounds"], done[0]["commandRoundsDone"]) == (
        CID_A,
        rounds,
        rounds,
    )
    assert done[0]["roundsCompleted"] == rounds


def test_progress_telemetry_resumes_at_once_when_the_clock_is_set_back(
    sync_redis: redis_lib.Redis, outbox: Outbox
) -> None:
    now = [1_000_000]
    ledger = CommandLedger(
        sync_redis, dedupe_ttl_s=60, max_queued_rounds=100, progress_interval_s=0.2, clock_ms=lambda: now[0]
    )
    ledger.submit("m1", CID_A, 3, None)
    ledger.begin("m1")
    now[0] -= 3_600_000  # NTP stepped the clock back an hour
    ledger.progress("m1", CID_A, PPR, PPR)
    now[0] += 1
    ledger.progress("m1", CID_A, 2 * PPR, PPR)
    rounds_reported = [
        e.values["commandRoundsDone"] for e in outbox.read(100) if "roundsCompleted" in e.values
    ]
    assert rounds_reported == [1]  # then throttled again from the new clock


def test_heartbeats_repeat_the_last_finished_commands_newest_first(
    sync_redis: redis_lib.Redis, outbox: Outbox
) -> None:
    ledger = CommandLedger(sync_redis, dedupe_ttl_s=60, max_queued_rounds=100, recent_done=2)
    ledger.report("m1")
    assert "recentDone" not in outbox.read(100)[-1].values  # nothing finished yet: no key at all
    finished = [f"c-{i:08x}" for i in range(1, 4)]
    for cid in [*finished, "c-cccccccc"]:
        ledger.submit("m1", cid, 1, None)
    for cid in finished:
        ledger.begin("m1")
        ledger.progress("m1", cid, PPR, PPR)
    ledger.begin("m1")  # the fourth is running, not finished
    ledger.clear("m1")  # and a stopped command never counts as finished
    ledger.report("m1")
    heartbeat = outbox.read(100)[-1].values
    assert heartbeat["recentDone"] == [finished[2], finished[1]]  # capped at 2, newest first
    ledger.report("m2")
    assert "recentDone" not in outbox.read(100)[-1].values  # per motor


def test_a_submit_to_an_idle_motor_begins_its_command_with_one_telemetry_entry(
    ledger: CommandLedger, outbox: Outbox
) -> None:
    first = ledger.submit("m1", CID_A, 2, 30.0, begin=True)
    assert (first.status, first.queued_rounds) == (SubmitStatus.ACCEPTED, 2)
    assert first.begun is not None
    assert (first.begun.command_id, first.begun.rounds, first.begun.speed_rpm) == (CID_A, 2, 30.0)
    assert ledger.status("m1").current_command_id == CID_A
    # Queued behind the current command: not begun, whatever the caller asks.
    second = ledger.submit("m1", CID_B, 1, None, begin=True)
    assert (second.status, second.queued_rounds, second.begun) == (SubmitStatus.ACCEPTED, 3, None)
    entries = [e.values for e in outbox.read(100)]
    assert [(v["commandId"], v.get("state"), "startedTs" in v) for v in entries] == [
        (CID_A, "running", True),  # queued and started in one entry
        (CID_B, None, False),  # queued
    ]
    assert entries[0]["receivedTs"] == entries[0]["startedTs"]
    # A duplicate begins nothing either; the next command is begun by the finish as before.
    assert ledger.submit("m1", CID_A, 2, 30.0, begin=True).begun is None
    nxt = ledger.finish("m1", CID_A, 2 * PPR, PPR, begin_next=True)
    assert nxt is not None
    assert nxt.command_id == CID_B


def test_a_submit_begins_nothing_while_a_resumed_command_is_current(ledger: CommandLedger) -> None:
    """A restart finds the command it was turning still current and queued: a new submit queues."""
    ledger.submit("m1", CID_A, 2, None)
    assert ledger.begin("m1") is not None
    ledger.progress("m1", CID_A, PPR, PPR)
    assert ledger.submit("m1", CID_B, 1, None, begin=True).begun is None
    resumed = ledger.begin("m1")
    assert resumed is not None
    assert (resumed.command_id, resumed.rounds_done) == (CID_A, 1)


def test_a_reask_sends_a_finished_commands_done_again_with_its_original_ts_and_values(
    ledger: CommandLedger, outbox: Outbox, sync_redis: redis_lib.Redis
) -> None:
    ledger.submit("m1", CID_A, 2, None)
    ledger.submit("m1", CID_B, 1, None)
    assert ledger.recall("m1", CID_A) == Recalled(CommandOutcome.PENDING, 3)  # queued
    ledger.begin("m1")
    assert ledger.recall("m1", CID_A).outcome is CommandOutcome.PENDING  # turning
    ledger.finish("m1", CID_A, 2 * PPR, PPR, begin_next=False)
    (done,) = [e for e in outbox.read(100) if e.values.get("commandDone") is True]
    outbox.ack(outbox.read(100))  # ThingsBoard confirmed it all; the webhook after it may still fail
    ttl = sync_redis.ttl(ledger.keys.seen("m1", CID_A))

    assert ledger.recall("m1", CID_A) == Recalled(CommandOutcome.DONE, 1)
    (again,) = outbox.read(100)
    assert (again.device, again.ts, again.values) == (done.device, done.ts, done.values)
    assert again.values["commandId"] == CID_A
    # The marker keeps its TTL (the dedupe window), and it still dedupes: nothing turns again.
    assert 0 < sync_redis.ttl(ledger.keys.seen("m1", CID_A)) <= ttl
    assert ledger.submit("m1", CID_A, 2, None).status is SubmitStatus.DUPLICATE
    assert ledger.recall("m1", CID_B).outcome is CommandOutcome.PENDING
    status = ledger.status("m1")
    assert (status.queued_rounds, status.rounds_completed, status.commands_done) == (1, 2, 1)


def test_a_reask_of_a_cleared_or_unknown_command_queues_nothing(
    ledger: CommandLedger, outbox: Outbox, sync_redis: redis_lib.Redis
) -> None:
    ledger.submit("m1", CID_A, 5, None)
    ledger.begin("m1")
    ledger.clear("m1")
    outbox.ack(outbox.read(100))
    assert sync_redis.ttl(ledger.keys.seen("m1", CID_A)) > 0
    assert ledger.recall("m1", CID_A) == Recalled(CommandOutcome.CLEARED, 0)
    # Never seen here (or this Redis lost it): unknown, and nothing is queued or sent.
    assert ledger.recall("m1", CID_B) == Recalled(None, 0)
    assert outbox.read(100) == []
    assert ledger.begin("m1") is None
    # A marker that expired is not brought back without a TTL by a late finish or clear.
    sync_redis.delete(ledger.keys.seen("m1", CID_A))
    ledger.submit("m1", CID_B, 1, None)
    sync_redis.delete(ledger.keys.seen("m1", CID_B))
    ledger.clear("m1")
    assert sync_redis.exists(ledger.keys.seen("m1", CID_B)) == 0
