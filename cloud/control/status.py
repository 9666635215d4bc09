"""The fleet as an operator sees it, read from Redis in two pipelined round trips.

Per motor: online or not (its last telemetry: a state change, progress or the edge's heartbeat),
its state and e-stop reading, the command turning and its progress, the cloud's hold, its held and
outstanding work and ledger totals, its last done. Fleet-wide: the ingest rate, the backlog of every
gift stream, how old the oldest unhandled gift is (worker lag) and the dead-letter count.

The ingest rate needs no counter on the ingest path: Redis counts the entries ever added to each
stream (XINFO STREAM ``entries-added``), and each read leaves a sample of that count in Redis, so
the next read (from any API instance) divides the difference by the time between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from redis.asyncio import Redis, RedisCluster

from cloud.api.settings import FleetStatusSettings
from cloud.control.reported import DEVICES_KEY
from cloud.ledger.store import DeviceTotals, device_key, devices_key, held_key
from cloud.realtime.live_state import done_key
from cloud.redis_text import as_text
from cloud.stream_backlog import group_backlog
from cloud.worker.dlq import DLQ_STREAM
from giftwheel.clock import Clock, SystemClock
from giftwheel.contracts import WORKER_GROUP
from giftwheel.contracts.control import ALL_MOTORS, HOLDS_KEY, HoldRecord
from giftwheel.contracts.motor import EStopInput, MotorState

# List of "<ms>:<entries added, all streams>" samples, newest first: what the ingest rate is
# counted against.
INGEST_SAMPLES_KEY = "giftwheel:status:ingest-samples"


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)


class CurrentCommand(_Wire):
    command_id: str
    rounds: int | None = None
    rounds_done: int | None = None


class LastDone(_Wire):
    command_id: str
    at_ms: int | None = None


class LedgerTotals(_Wire):
    """The cloud ledger's rounds for a motor: accepted = done + held + cancelled + failed + outstanding."""

    accepted: int = 0
    sent: int = 0
    done: int = 0
    held: int = 0
    cancelled: int = 0
    failed: int = 0
    outstanding: int = 0
    capped: int = 0

    @classmethod
    def of(cls, totals: DeviceTotals) -> LedgerTotals:
        return cls(**asdict(totals), outstanding=totals.outstanding)


class MotorStatus(_Wire):
    device: str
    online: bool
    last_seen_ms: int | None = None
    # The motor's own report; None before it reported any.
    state: MotorState | None = None
    estop: EStopInput | None = None
    # The command the edge turns (or last turned, with rounds_done == rounds once done).
    current: CurrentCommand | None = None
    # Rounds queued at the edge, as it last reported.
    queued_rounds: int | None = None
    # The cloud's hold on it (its own, or the hold of every motor); None: not held.
    hold: HoldRecord | None = None
    held_commands: int = 0
    totals: LedgerTotals
    last_done: LastDone | None = None


class StreamStatus(_Wire):
    stream: str
    # Entries the worker group has not finished: never read, or read and not acknowledged.
    backlog: int
    # Age of the oldest of them; 0 when there is none.
    oldest_unhandled_ms: int


class FleetStatus(_Wire):
    at_ms: int
    motors: list[MotorStatus]
    # The hold of every motor (motors not known yet included); None: not in force.
    all_held: HoldRecord | None = None
    # Gifts queued per second over ingest_window_s (or the time since the previous read, if
    # longer); None on the first read, or when a stream was reset meanwhile.
    ingest_per_s: float | None = None
    ingest_over_s: float | None = None
    backlog: int
    # Age of the oldest gift no worker has finished with, every stream: how far behind they are.
    worker_lag_ms: int
    dlq_size: int
    streams: list[StreamStatus]


def _entry_ms(entry_id: object) -> int:
    return int(as_text(entry_id).split("-", 1)[0])


class FleetStatusReader:
    def __init__(
        self,
        redis: Redis | RedisCluster,
        *,
        streams: Sequence[str],
        settings: FleetStatusSettings,
        clock: Clock | None = None,
    ) -> None:
        self._redis = redis
        self._streams = list(streams)
        self._settings = settings
        self._clock = clock or SystemClock()

    async def read(self) -> FleetStatus:
        now_ms = self._clock.wall_ms()
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(DEVICES_KEY)
            pipe.hgetall(HOLDS_KEY)
            pipe.xlen(DLQ_STREAM)
            pipe.lrange(INGEST_SAMPLES_KEY, 0, -1)
            for stream in self._streams:
                pipe.smembers(devices_key(stream))
                pipe.xinfo_stream(stream)
                pipe.xinfo_groups(stream)
                pipe.xpending(stream, WORKER_GROUP)
            first = await pipe.execute(raise_on_error=False)
        live_raw, holds_raw, dlq_size, samples = (_raise(reply) for reply in first[:4])
        live = {as_text(k): orjson.loads(v) for k, v in live_raw.items()}
        holds = {as_text(k): HoldRecord.model_validate_json(v) for k, v in holds_raw.items()}
        per_stream = [first[4 + 4 * i : 8 + 4 * i] for i in range(len(self._streams))]
        known: set[str] = set(live) | {d for d in holds if d != ALL_MOTORS}
        for members, *_ in per_stream:
            known.update(as_text(m) for m in _ok(members, set()))
        devices = sorted(known)

        shards = [
            _Shard.of(stream, *rest) for stream, (_, *rest) in zip(self._streams, per_stream, strict=True)
        ]
        async with self._redis.pipeline(transaction=False) as pipe:
            for device in devices:
                for stream in self._streams:
                    pipe.hgetall(device_key(stream, device))
                    pipe.scard(held_key(stream, device))
                pipe.lindex(done_key(device), 0)
            for shard in shards:
                if shard.undelivered:
                    pipe.xrange(shard.stream, min=f"({shard.last_delivered}", max="+", count=1)
            added = sum(s.entries_added for s in shards if s.entries_added is not None)
            if all(s.entries_added is not None for s in shards):
                pipe.lpush(INGEST_SAMPLES_KEY, f"{now_ms}:{added}")
                pipe.ltrim(INGEST_SAMPLES_KEY, 0, self._settings.ingest_samples - 1)
            second = await pipe.execute()

        per_device = 2 * len(self._streams) + 1
        motors = [
            self._motor(
                device, live.get(device, {}), holds, second[i * per_device : (i + 1) * per_device], now_ms
            )
            for i, device in enumerate(devices)
        ]
        rest = iter(second[len(devices) * per_device :])
        streams = []
        for shard in shards:
            oldest = shard.oldest_pending_ms
            if shard.undelivered:
                rows = next(rest)
                if rows:
                    ms = _entry_ms(rows[0][0])
                    oldest = ms if oldest is None else min(oldest, ms)
            age = 0 if oldest is None or shard.backlog == 0 else max(0, now_ms - oldest)
            streams.append(StreamStatus(stream=shard.stream, backlog=shard.backlog, oldest_unhandled_ms=age))
        rate, over_s = self._ingest_rate(
            samples, now_ms, added if all(s.entries_added is not None for s in shards) else None
        )
        every = holds.get(ALL_MOTORS)
        return FleetStatus(
            at_ms=now_ms,
            motors=motors,
            all_held=every,
            ingest_per_s=rate,
            ingest_over_s=over_s,
            backlog=sum(s.backlog for s in streams),
            worker_lag_ms=max((s.oldest_unhandled_ms for s in streams), default=0),
            dlq_size=int(dlq_size),
            streams=streams,
        )

    def _motor(
        self, device: str, live: dict[str, Any], holds: dict[str, HoldRecord], rows: list[Any], now_ms: int
    ) -> MotorStatus:
        totals = DeviceTotals()
        held = 0
        for raw, count in zip(rows[0:-1:2], rows[1:-1:2], strict=True):
            totals = totals + DeviceTotals(**{as_text(k): int(v) for k, v in raw.items()})
            held += int(count)
        done = orjson.loads(rows[-1]) if rows[-1] else None
        seen = live.get("ts")
        command_id = live.get("commandId")
        return MotorStatus(
            device=device,
            online=isinstance(seen, int) and now_ms - seen <= self._settings.offline_after_s * 1000,
            last_seen_ms=seen if isinstance(seen, int) else None,
            state=live.get("state"),
            estop=live.get("estop"),
            current=None
            if command_id is None
            else CurrentCommand(
                command_id=command_id,
                rounds=live.get("commandRounds"),
                rounds_done=live.get("commandRoundsDone"),
            ),
            queued_rounds=live.get("queuedRounds"),
            hold=holds.get(device) or holds.get(ALL_MOTORS),
            held_commands=held,
            totals=LedgerTotals.of(totals),
            last_done=None if done is None else LastDone(command_id=done["commandId"], at_ms=done.get("ts")),
        )

    def _ingest_rate(
        self, samples: list[Any], now_ms: int, added: int | None
    ) -> tuple[float | None, float | None]:
        """Entries added per second since the newest sample at least the window old (or the
        oldest one, when none is that old)."""
        if added is None:
            return None, None
        window_ms = self._settings.ingest_window_s * 1000
        parsed = [tuple(int(x) for x in as_text(s).split(":", 1)) for s in samples]
        earlier = [(ms, n) for ms, n in parsed if ms < now_ms]
        if not earlier:
            return None, None
        old_enough = [(ms, n) for ms, n in earlier if now_ms - ms >= window_ms]
        ms, then = old_enough[0] if old_enough else earlier[-1]
        if added < then:
            return None, None  # a stream was deleted (or Redis lost it) meanwhile
        over_s = (now_ms - ms) / 1000
        return round((added - then) / over_s, 3), over_s


class _Shard:
    """What the first round trip read of one gift stream."""

    __slots__ = ("backlog", "entries_added", "last_delivered", "oldest_pending_ms", "stream", "undelivered")

    def __init__(
        self,
        stream: str,
        backlog: int,
        entries_added: int | None,
        last_delivered: str,
        undelivered: bool,
        oldest_pending_ms: int | None,
    ) -> None:
        self.stream = stream
        self.backlog = backlog
        self.entries_added = entries_added
        self.last_delivered = last_delivered
        self.undelivered = undelivered
        self.oldest_pending_ms = oldest_pending_ms

    @classmethod
    def of(cls, stream: str, info: Any, groups: Any, pending: Any) -> _Shard:
        if isinstance(info, Exception):  # no such stream yet: nothing queued, nothing added
            return cls(stream, 0, 0, "0-0", False, None)
        length = int(info.get("length"))
        added = info.get("entries-added")
        group = next((g for g in _ok(groups, []) if as_text(g.get("name")) == WORKER_GROUP), None)
        if group is None:
            return cls(stream, length, None if added is None else int(added), "0-0", length > 0, None)
        lag = group.get("lag")
        backlog = group_backlog(group, length)
        pending_n = int(group.get("pending") or 0)
        oldest = None
        if pending_n and not isinstance(pending, Exception) and pending.get("min"):
            oldest = _entry_ms(pending["min"])
        undelivered = lag is None or int(lag) > 0
        return cls(
            stream,
            backlog,
            None if added is None else int(added),
            as_text(group.get("last-delivered-id")),
            undelivered,
            oldest,
        )


def _ok(reply: Any, default: Any) -> Any:
    """A pipelined reply about a stream, or ``default`` for the error a missing stream or group gives."""
    return default if isinstance(reply, Exception) else reply


def _raise(reply: Any) -> Any:
    if isinstance(reply, Exception):
        raise reply
    return reply
