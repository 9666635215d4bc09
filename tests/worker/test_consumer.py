"""The consumer loop against a real Redis, with a plain recording handler (the loop has no gift logic)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from redis.asyncio import Redis

from cloud.worker.consumer import ConsumerConfig, Entry, Outcome, Retryable, ShardConsumer, ensure_group
from cloud.worker.dlq import DeadLetters
from cloud.worker.metrics import WorkerMetrics
from giftwheel.contracts import EVENTS_STREAM, WORKER_GROUP
from tests.waiting import wait_until

S = EVENTS_STREAM
Handler = Callable[[str, list[Entry]], Awaitable[Outcome]]


class Recorder:
    """Acks everything it handles, in order; raises for entries marked 'poison'."""

    def __init__(self, *, retryable_failures: int = 0) -> None:
        self.handled: list[str] = []
        self.batches: list[list[str]] = []
        self.retryable_failures = retryable_failures
        self.poison_calls = 0

    async def __call__(self, stream: str, entries: list[Entry]) -> Outcome:
        if self.retryable_failures:
            self.retryable_failures -= 1
            raise Retryable("dependency away")
        if any(e.fields.get("v") == "poison" for e in entries):
            self.poison_calls += 1
            raise ValueError("handler bug triggered by this entry")
        dead = [(e.entry_id, "told to die") for e in entries if e.fields.get("v") == "dead"]
        live = [e for e in entries if e.fields.get("v") != "dead"]
        self.batches.append([e.fields["v"] for e in live])
        self.handled.extend(e.fields["v"] for e in live)
        return Outcome(ack=[e.entry_id for e in live], dead=dead)


async def _ready() -> None:
    return None


@asynccontextmanager
async def running(
    redis: Redis,
    handler: Handler,
    *,
    name: str = "w1",
    max_deliveries: int = 3,
    claim_idle_ms: int = 0,
    gather_ms: int = 0,
) -> AsyncIterator[ShardConsumer]:
    config = ConsumerConfig(
        batch_max_entries=50, read_block_ms=20, claim_idle_ms=claim_idle_ms, max_deliveries=max_deliveries,
        retry_pause_s=0.01, gather_ms=gather_ms,
    )  # fmt: skip
    consumer = ShardConsumer(redis, S, name, handler, config, DeadLetters(redis), WorkerMetrics(), _ready)
    task = asyncio.create_task(consumer.run())
    try:
        yield consumer
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 5)


async def pending(redis: Redis) -> int:
    return int((await redis.xpending(S, WORKER_GROUP))["pending"])


async def add(redis: Redis, *values: str) -> None:
    for value in values:
        await redis.xadd(S, {"v": value})


async def test_entries_queued_before_the_group_existed_are_handled_in_order(redis: Redis) -> None:
    await add(redis, *(str(i) for i in range(120)))
    recorder = Recorder()
    async with running(redis, recorder):
        await wait_until(lambda: len(recorder.handled) == 120, what="all handled")
        await add(redis, "late")
        await wait_until(lambda: recorder.handled[-1:] == ["late"], what="late entry")
    assert recorder.handled == [*(str(i) for i in range(120)), "late"]
    assert max(len(b) for b in recorder.batches) <= 50
    assert await pending(redis) == 0


async def test_a_busy_shard_gathers_entries_into_one_batch_and_an_idle_one_reads_at_once(
    redis: Redis,
) -> None:
    recorder = Recorder()
    async with running(redis, recorder, gather_ms=1_000):
        # Idle shard: the lone entry is handled on its own, without waiting for company.
        await add(redis, "a")
        await wait_until(lambda: recorder.handled == ["a"], what="lone entry")
        # Busy now (the last read found an entry): what comes within the window is read together.
        await add(redis, "b", "c", "d")
        await wait_until(lambda: len(recorder.handled) == 4, what="gathered entries")
    assert recorder.batches == [["a"], ["b", "c", "d"]]
    assert await pending(redis) == 0


async def test_retryable_failure_keeps_the_batch_and_counts_no_delivery(redis: Redis) -> None:
    await add(redis, "a", "b")
    recorder = Recorder(retryable_failures=3)
    async with running(redis, recorder, max_deliveries=1):
        await wait_until(lambda: recorder.handled == ["a", "b"], what="handled after retries")
    assert await DeadLetters(redis).size() == 0
    assert await pending(redis) == 0


async def test_poison_entry_goes_to_the_dead_letters_after_n_deliveries_and_others_pass(redis: Redis) -> None:
    await add(redis, "a", "poison", "b")
    recorder = Recorder()
    letters = DeadLetters(redis)
    async with running(redis, recorder, max_deliveries=3):
        await wait_until(lambda: recorder.handled == ["a", "b"], what="good entries handled")
        await wait_until(lambda: _size_is(letters, 1), what="dead letter")
        await add(redis, "c")
        await wait_until(lambda: recorder.handled == ["a", "b", "c"], what="loop goes on")
    (letter,) = await letters.read()
    assert letter.stream == S
    assert letter.deliveries == 4
    assert "handler failed on 3 deliveries" in letter.reason
    # Delivery 1 in the batch, deliveries 2 and 3 alone; the 4th delivery goes to the dead letters.
    assert recorder.poison_calls == 3
    assert await pending(redis) == 0


async def _size_is(letters: DeadLetters, size: int) -> bool:
    return await letters.size() == size


async def test_handler_verdict_dead_goes_to_dlq_and_replay_brings_it_back(redis: Redis) -> None:
    await add(redis, "a", "dead", "b")
    recorder = Recorder()
    letters = DeadLetters(redis)
    async with running(redis, recorder):
        await wait_until(lambda: recorder.handled == ["a", "b"], what="handled")
        await wait_until(lambda: _size_is(letters, 1), what="dead letter")
    (letter,) = await letters.read()
    assert letter.reason == "told to die"
    # The fixed entry is replayed onto its stream (the recorder now accepts it as an event).
    await redis.xadd(letters.stream, {"stream": S, "event": "x"})  # a second letter, left alone
    replayed = await letters.replay([letter.dlq_id])
    assert [r[0] for r in replayed] == [letter.dlq_id]
    assert await letters.size() == 1
    rows = await redis.xrange(S, min=replayed[0][1], max=replayed[0][1])
    assert rows
    assert rows[0][1] == {"event": ""}


async def test_a_new_owner_handles_what_a_dead_consumer_left_pending_before_new_entries(redis: Redis) -> None:
    await ensure_group(redis, S)
    await add(redis, "1", "2", "3")
    # A consumer reads the entries and dies before acking them.
    await redis.xreadgroup(WORKER_GROUP, "dead-worker", {S: ">"}, count=10)
    await add(redis, "4")
    recorder = Recorder()
    async with running(redis, recorder, name="heir", claim_idle_ms=50):
        await wait_until(lambda: recorder.handled == ["1", "2", "3", "4"], what="takeover in order")
    assert await pending(redis) == 0


async def test_entries_past_max_deliveries_are_dead_lettered_on_takeover(redis: Redis) -> None:
    await ensure_group(redis, S)
    await add(redis, "crashy")
    for n in range(3):  # three workers died on it
        await redis.xautoclaim(S, WORKER_GROUP, f"dead-{n}", 0, "0-0") if n else await redis.xreadgroup(
            WORKER_GROUP, "dead-0", {S: ">"}
        )
    recorder = Recorder()
    letters = DeadLetters(redis)
    async with running(redis, recorder, name="heir", max_deliveries=3):
        await wait_until(lambda: _size_is(letters, 1), what="dead letter")
    assert recorder.handled == []
    (letter,) = await letters.read()
    assert letter.deliveries == 4
    assert "delivered 4 times" in letter.reason


async def test_idle_consumer_names_with_nothing_pending_are_forgotten(redis: Redis) -> None:
    await ensure_group(redis, S)
    await add(redis, "1")
    await redis.xreadgroup(WORKER_GROUP, "restarted-long-ago", {S: ">"}, count=1)
    ((first_id, _fields),) = await redis.xrange(S) or []
    await redis.xack(S, WORKER_GROUP, str(first_id))
    await add(redis, "2")
    await redis.xreadgroup(WORKER_GROUP, "holds-an-entry", {S: ">"}, count=1)
    recorder = Recorder()
    async with running(redis, recorder, name="owner", claim_idle_ms=0):
        await wait_until(lambda: recorder.handled == ["2"], what="pending entry taken over")

        async def names() -> set[str]:
            return {c["name"] for c in await redis.xinfo_consumers(S, WORKER_GROUP)}

        await wait_until(lambda: _names_are(names, {"owner"}), what="idle names forgotten")


async def _names_are(names: Callable[[], Awaitable[set[str]]], expected: set[str]) -> bool:
    return await names() == expected
