"""The fleet status read model against a real Redis: each motor's state, holds, work and totals;
the streams' backlog and lag, the ingest rate and the DLQ."""

from __future__ import annotations

import time

from redis.asyncio import Redis

from cloud.api.settings import FleetStatusSettings, RealtimeSettings
from cloud.control.holds import Holds
from cloud.control.status import FleetStatusReader
from cloud.ledger.store import Ledger
from cloud.realtime.live_state import LiveState
from cloud.worker.dlq import DeadLetters
from giftwheel.clock import ManualClock
from giftwheel.contracts import EVENT_FIELD, WORKER_GROUP, event_streams
from giftwheel.contracts.control import ALL_MOTORS, HoldRecord
from giftwheel.contracts.motor import MotorState

STREAMS = event_streams(2)
SETTINGS = FleetStatusSettings(offline_after_s=150, ingest_window_s=10)


async def test_empty_deployment(redis: Redis) -> None:
    status = await FleetStatusReader(redis, streams=STREAMS, settings=SETTINGS).read()
    assert status.motors == []
    assert (status.backlog, status.worker_lag_ms, status.dlq_size) == (0, 0, 0)
    assert status.ingest_per_s is None  # nothing to count against yet
    assert [s.stream for s in status.streams] == STREAMS


async def test_motors_work_and_streams(redis: Redis) -> None:
    now = time.time_ns() // 1_000_000
    clock = ManualClock(wall_ms=now)
    ledger = Ledger(redis, streams=STREAMS, ttl_s=3_600, clock=clock)
    live = LiveState(redis, RealtimeSettings())
    # wheel-1: one command turning (3 of 10 rounds), one done before, one failed; online.
    turning = (await ledger.assign(STREAMS[0], "wheel-1", {"e1": 10}, cap=1_000, deadline_ms=now)).commands[0]
    await ledger.mark_sent(turning, deadline_ms=now + 60_000)
    finished = (await ledger.assign(STREAMS[1], "wheel-1", {"e2": 4}, cap=1_000, deadline_ms=now)).commands[0]
    await ledger.mark_done(finished.command_id)
    lost = (await ledger.assign(STREAMS[1], "wheel-1", {"e3": 2}, cap=1_000, deadline_ms=now)).commands[0]
    await ledger.mark_failed(STREAMS[1], lost.command_id, "edge unreachable")
    await live.merge(
        "wheel-1",
        {
            "state": "running",
            "commandId": turning.command_id,
            "commandRounds": 10,
            "commandRoundsDone": 3,
            "queuedRounds": 7,
            "estop": "released",
        },
        now - 1_000,
        latest_ms=now,
    )
    await live.remember_done("wheel-1", {"commandId": finished.command_id, "ts": now - 5_000})
    # wheel-2: held by an operator, with held work, last heard of long ago.
    hold = HoldRecord(by="ops", reason="jam", at_ms=now - 2_000)
    await Holds(redis).place("wheel-2", hold)
    await ledger.assign(STREAMS[0], "wheel-2", {"e4": 5}, cap=1_000, deadline_ms=now, held=True)
    await ledger.assign(STREAMS[1], "wheel-2", {"e5": 6}, cap=1_000, deadline_ms=now, held=True)
    await live.merge("wheel-2", {"state": "held"}, now - 200_000, latest_ms=now)
    # Streams: shard 0 has 3 entries, 1 read and not acked, 2 never read; shard 1 all acked.
    for stream in STREAMS:
        await redis.xgroup_create(stream, WORKER_GROUP, id="0", mkstream=True)
    first = await redis.xadd(STREAMS[0], {EVENT_FIELD: "{}"})
    await redis.xadd(STREAMS[0], {EVENT_FIELD: "{}"})
    await redis.xadd(STREAMS[0], {EVENT_FIELD: "{}"})
    await redis.xreadgroup(WORKER_GROUP, "w1", {STREAMS[0]: ">"}, count=1)
    done = await redis.xadd(STREAMS[1], {EVENT_FIELD: "{}"})
    await redis.xreadgroup(WORKER_GROUP, "w1", {STREAMS[1]: ">"})
    await redis.xack(STREAMS[1], WORKER_GROUP, done)
    await DeadLetters(redis).add(STREAMS[0], "1-0", {EVENT_FIELD: "{}"}, "bad", 5)

    clock.advance(1)  # past the entries just added (their ids carry the real time)
    reader = FleetStatusReader(redis, streams=STREAMS, settings=SETTINGS, clock=clock)
    status = await reader.read()

    one, two = status.motors
    assert one.device == "wheel-1"
    assert one.online
    assert one.state is MotorState.RUNNING
    assert one.estop == "released"
    assert one.hold is None
    assert one.held_commands == 0
    assert one.current is not None
    assert (one.current.command_id, one.current.rounds, one.current.rounds_done) == (
        turning.command_id,
        10,
        3,
    )
    assert one.queued_rounds == 7
    assert one.last_done is not None
    assert one.last_done.command_id == finished.command_id
    t = one.totals
    assert (t.accepted, t.done, t.failed, t.held, t.cancelled, t.outstanding) == (16, 4, 2, 0, 0, 10)

    assert two.device == "wheel-2"
    assert not two.online
    assert two.state is MotorState.HELD
    assert two.hold == hold
    assert two.held_commands == 2
    assert (two.totals.accepted, two.totals.held, two.totals.outstanding) == (11, 11, 0)
    assert two.last_done is None
    assert two.current is None

    assert status.all_held is None
    assert status.dlq_size == 1
    assert [(s.stream, s.backlog) for s in status.streams] == [(STREAMS[0], 3), (STREAMS[1], 0)]
    assert status.backlog == 3
    first_ms = int(str(first).split("-")[0])
    assert status.streams[0].oldest_unhandled_ms == clock.wall_ms() - first_ms
    assert status.worker_lag_ms == clock.wall_ms() - first_ms
    assert status.streams[1].oldest_unhandled_ms == 0
    assert status.ingest_per_s is None

    # 10 s on, 20 more gifts queued: 2 per second; the hold of all shows on every motor.
    clock.advance(10)
    for _ in range(20):
        await redis.xadd(STREAMS[1], {EVENT_FIELD: "{}"})
    await Holds(redis).place(ALL_MOTORS, HoldRecord(by="night", at_ms=now))
    status = await reader.read()
    assert status.ingest_per_s == 2.0
    assert status.ingest_over_s == 10.0
    assert status.all_held is not None
    assert status.all_held.by == "night"
    assert [m.hold.by if m.hold else None for m in status.motors] == [
        "night",
        "ops",
    ]
    # Its last telemetry now 12 s old: still online; past offline_after_s it is not.
    assert status.motors[0].online
    clock.advance(150)
    assert not (await reader.read()).motors[0].online


async def test_wire_is_camel_case(redis: Redis) -> None:
    await Holds(redis).place("wheel-9", HoldRecord(by="ops", at_ms=1))
    wire = (await FleetStatusReader(redis, streams=STREAMS, settings=SETTINGS).read()).model_dump(
        by_alias=True, mode="json"
    )
    assert set(wire) >= {"atMs", "motors", "allHeld", "ingestPerS", "backlog", "workerLagMs", "dlqSize"}
    assert wire["motors"][0]["device"] == "wheel-9"
    assert wire["motors"][0]["heldCommands"] == 0
