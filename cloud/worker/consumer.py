"""The Redis Streams consumer loop for one stream shard. It holds no gift logic: it calls a handler.

Contract with the handler: it gets a batch of entries in stream order and answers which entries
to ack and which to dead-letter (with a reason), and which it acked itself (atomically with its own
records); anything else stays pending. A
``Retryable`` error (ThingsBoard away) keeps the batch in hand and retries it once the
dependency is back; any other error is a suspected poison entry: the entries are claimed again
(counting a delivery) and handled one at a time, so only the culprit reaches the dead-letter
stream, after ``max_deliveries``.

While entries keep coming, reads are at least ``gather_ms`` apart, so a busy shard hands the
handler batches of several gifts (coalesced into one command per device) instead of one gift
each; a read that found the shard idle is followed by a blocking read at once, so a lone gift
is not held back.

Only the owner of the shard's lease runs this loop, so entries of a shard are handled in order.
A new owner first takes over what the previous one left pending (XAUTOCLAIM past
``claim_idle_ms``), then reads new entries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError, ResponseError

from cloud.redis_text import as_text
from cloud.worker.dlq import DeadLetters
from cloud.worker.metrics import WorkerMetrics
from giftwheel.clock import Clock, SystemClock
from giftwheel.contracts import WORKER_GROUP
from giftwheel.lua import lua_source

log = structlog.get_logger(__name__)


class Retryable(Exception):
    """The batch failed for a reason outside it (a dependency is away); try the same batch again."""


@dataclass(frozen=True, slots=True)
class Entry:
    entry_id: str
    fields: dict[str, str]
    deliveries: int = 1


@dataclass(slots=True)
class Outcome:
    ack: list[str] = field(default_factory=list)
    dead: list[tuple[str, str]] = field(default_factory=list)
    # Entries the handler already acknowledged itself, atomically with its own records.
    acked: list[str] = field(default_factory=list)


# The handler: (stream, entries in stream order) -> which to ack and which to dead-letter.
Handler = Callable[[str, list[Entry]], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class ConsumerConfig:
    batch_max_entries: int
    read_block_ms: int
    claim_idle_ms: int
    max_deliveries: int
    retry_pause_s: float = 0.2
    # While a shard is busy, the least time from one read's start to the next one's.
    gather_ms: int = 0


_FORGET_IDLE_CONSUMERS = lua_source("cloud.worker", "forget_idle_consumers.lua")


def _entries(rows: list[Any], deliveries: dict[str, int] | None = None) -> list[Entry]:
    out = []
    for entry_id, raw in rows:
        if raw is None:  # deleted from the stream while pending: nothing left to handle
            continue
        eid = as_text(entry_id)
        fields = {as_text(k): as_text(v) for k, v in raw.items()}
        out.append(Entry(eid, fields, (deliveries or {}).get(eid, 1)))
    return out


def _stream_rows(reply: Any) -> list[tuple[Any, list[Any]]]:
    """XREADGROUP's reply as (stream, entries) pairs (RESP2 gives a list, RESP3 a dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(reply.items())
    return [(stream, entries) for stream, entries in reply]


async def ensure_group(redis: Redis | RedisCluster, stream: str) -> None:
    """Create the group from the stream's start (entries queued before any worker ran count too)."""
    try:
        await redis.xgroup_create(stream, WORKER_GROUP, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


class ShardConsumer:
    def __init__(
        self,
        redis: Redis | RedisCluster,
        stream: str,
        consumer: str,
        handler: Handler,
        config: ConsumerConfig,
        dead_letters: DeadLetters,
        metrics: WorkerMetrics,
        wait_ready: Callable[[], Awaitable[None]],
        is_ready: Callable[[], bool] | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._redis = redis
        self._clock = clock or SystemClock()
        self.stream = stream
        self._consumer = consumer
        self._handler = handler
        self._config = config
        self._dead = dead_letters
        self._metrics = metrics
        self._wait_ready = wait_ready
        self._is_ready = is_ready
        self._stop = asyncio.Event()
        self._forget_idle = redis.register_script(_FORGET_IDLE_CONSUMERS)
        # Our own pending entries (left by a failed round trip) are handled before new ones.
        self._own_pending = True
        # Others' pending entries are looked for on start, then now and then (a consumer that
        # wrongly believed it owned the shard during a lease hand-over may have left some).
        self._next_takeover_check = 0.0
        # When the last read that found entries started; None after a read found the shard idle.
        self._busy_read_at: float | None = None

    def stop(self) -> None:
        """Finish the batch in hand, then return from ``run``."""
        self._stop.set()

    async def run(self) -> None:
        await ensure_group(self._redis, self.stream)
        while not self._stop.is_set():
            try:
                if not await self._ready_or_stopped():
                    return
                now = self._clock.monotonic()
                if now >= self._next_takeover_check:
                    if await self._take_over():
                        continue
                    self._next_takeover_check = now + max(1.0, self._config.claim_idle_ms / 1000)
                    await self._forget_idle(
                        keys=[self.stream],
                        args=[WORKER_GROUP, self._consumer, 10 * self._config.claim_idle_ms],
                    )
                if self._own_pending:
                    self._own_pending = await self._reread_own()
                    continue
                await self._gather()
                read_at = self._clock.monotonic()
                rows = await self._redis.xreadgroup(
                    WORKER_GROUP,
                    self._consumer,
                    {self.stream: ">"},
                    count=self._config.batch_max_entries,
                    block=self._config.read_block_ms,
                )
                found = _stream_rows(rows)
                self._busy_read_at = read_at if any(entries for _s, entries in found) else None
                for _stream, entries in found:
                    await self._process(_entries(entries))
            except (RedisError, OSError) as exc:
                log.warning("redis_unavailable", stream=self.stream, error=str(exc))
                self._own_pending = True
                await asyncio.sleep(self._config.retry_pause_s)

    async def _gather(self) -> None:
        """On a busy shard, let entries gather until ``gather_ms`` after the last read began.

        Each command costs the same at every hop whatever it carries (a ledger record, an RPC
        through ThingsBoard, the edge's persist, start and done reports, the viewers' events),
        so gifts read one at a time cost that per gift."""
        if self._busy_read_at is None or not self._config.gather_ms:
            return
        wait_s = self._busy_read_at + self._config.gather_ms / 1000 - self._clock.monotonic()
        if wait_s > 0:
            await asyncio.sleep(wait_s)

    async def _ready_or_stopped(self) -> bool:
        """Wait for the dispatcher; False when asked to stop first."""
        if self._stop.is_set():
            return False
        if self._is_ready is not None and self._is_ready():
            return True
        ready = asyncio.ensure_future(self._wait_ready())
        stopped = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait({ready, stopped}, return_when=asyncio.FIRST_COMPLETED)
        for task in (ready, stopped):
            task.cancel()
        return not self._stop.is_set()

    async def _reread_own(self) -> bool:
        rows = await self._redis.xreadgroup(
            WORKER_GROUP, self._consumer, {self.stream: "0"}, count=self._config.batch_max_entries
        )
        entries = [e for _stream, batch in _stream_rows(rows) for e in _entries(batch)]
        if not entries:
            return False
        counts = await self._delivery_counts([e.entry_id for e in entries])
        await self._process([Entry(e.entry_id, e.fields, counts.get(e.entry_id, 1)) for e in entries])
        return True

    async def _take_over(self) -> bool:
        """Handle entries other consumers left pending; True while some remain for this round."""
        pending = await self._redis.xpending(self.stream, WORKER_GROUP)
        consumers = {as_text(c["name"]): int(c["pending"]) for c in pending.get("consumers") or []}
        if not any(count for name, count in consumers.items() if name != self._consumer):
            return False
        start = "0-0"
        claimed_any = False
        while True:
            reply = await self._redis.xautoclaim(
                self.stream,
                WORKER_GROUP,
                self._consumer,
                min_idle_time=self._config.claim_idle_ms,
                start_id=start,
                count=self._config.batch_max_entries,
            )
            start, rows = as_text(reply[0]), reply[1]
            if rows:
                claimed_any = True
                ids = [as_text(r[0]) for r in rows]
                counts = await self._delivery_counts(ids)
                entries = _entries(rows, counts)
                log.info("entries_reclaimed", stream=self.stream, entries=len(entries))
                await self._process(entries)
            if start == "0-0":
                break
        if not claimed_any:
            # Pending with someone else but not idle long enough: that consumer may be alive.
            await asyncio.sleep(min(1.0, self._config.claim_idle_ms / 4000))
        return True

    async def _delivery_counts(self, ids: list[str]) -> dict[str, int]:
        """Delivery counts of entries this consumer holds (just read or claimed)."""
        rows = await self._redis.xpending_range(
            self.stream,
            WORKER_GROUP,
            min=ids[0],
            max=ids[-1],
            count=len(ids) + self._config.batch_max_entries,
            consumername=self._consumer,
        )
        return {as_text(r["message_id"]): int(r["times_delivered"]) for r in rows}

    async def _process(self, entries: list[Entry]) -> None:
        if not entries:
            return
        self._metrics.batch_size.observe(len(entries))
        poison = [e for e in entries if e.deliveries > self._config.max_deliveries]
        if poison:
            await self._dead_letter(
                [(e, f"delivered {e.deliveries} times without being handled") for e in poison]
            )
            entries = [e for e in entries if e.deliveries <= self._config.max_deliveries]
            if not entries:
                return
        try:
            await self._handle(entries)
        except (RedisError, OSError):
            raise
        except Exception:
            log.exception("batch_failed_isolating", stream=self.stream, entries=len(entries))
            for entry in entries:
                await self._isolate(entry)

    async def _handle(self, entries: list[Entry]) -> None:
        """Handle the batch, waiting out a missing dependency; asked to stop meanwhile, the batch
        stays pending (for the next owner of the shard)."""
        while True:
            try:
                outcome = await self._handler(self.stream, entries)
            except Retryable as exc:
                log.warning("batch_waits_for_dependency", stream=self.stream, reason=str(exc))
                await asyncio.sleep(self._config.retry_pause_s)
                if not await self._ready_or_stopped():
                    return
                continue
            await self._apply(entries, outcome)
            return

    async def _isolate(self, entry: Entry) -> None:
        """Handle one suspect entry alone; each failure counts a delivery, too many: dead letter."""
        while True:
            await self._redis.xclaim(self.stream, WORKER_GROUP, self._consumer, 0, [entry.entry_id])
            deliveries = (await self._delivery_counts([entry.entry_id])).get(entry.entry_id)
            if deliveries is None:  # acked meanwhile (by the handler's own bookkeeping)
                return
            if deliveries > self._config.max_deliveries:
                dead = Entry(entry.entry_id, entry.fields, deliveries)
                await self._dead_letter([(dead, f"handler failed on {deliveries - 1} deliveries")])
                return
            try:
                await self._handle([Entry(entry.entry_id, entry.fields, deliveries)])
                return
            except (RedisError, OSError):
                raise
            except Exception:
                log.exception("entry_failed", stream=self.stream, entry=entry.entry_id, deliveries=deliveries)
                await asyncio.sleep(self._config.retry_pause_s)

    async def _apply(self, entries: list[Entry], outcome: Outcome) -> None:
        by_id = {e.entry_id: e for e in entries}
        if outcome.dead:
            await self._dead_letter([(by_id[i], reason) for i, reason in outcome.dead if i in by_id])
        if outcome.ack:
            await self._redis.xack(self.stream, WORKER_GROUP, *outcome.ack)

    async def _dead_letter(self, letters: list[tuple[Entry, str]]) -> None:
        # The letter is written before the ack: a crash between the two leaves a duplicate letter
        # (same stream and entry id, easy to spot), never a lost entry.
        for entry, reason in letters:
            await self._dead.add(self.stream, entry.entry_id, entry.fields, reason, entry.deliveries)
            log.error("dead_lettered", stream=self.stream, entry=entry.entry_id, reason=reason)
        await self._redis.xack(self.stream, WORKER_GROUP, *(e.entry_id for e, _ in letters))
        self._metrics.dead_lettered.inc(len(letters))
