"""A rule-engine queue saved while the emulator runs (devstack/tb_emulator/queues.py: RuleEngineQueues.save,
RuleEngineQueue.update), as ThingsBoard applies its queue update event (thingsboard/thingsboard
common/queue/.../common/consumer/MainQueueConsumerManager.java doUpdate and the partition change that
follows, @dfe65d5): a new queue starts consuming; more partitions get their consumers; fewer leave the
messages of the partitions gone unpolled; a change of consumerPerPartition lets the pack attempt in
progress finish, does not retry it, and starts the new consumers only then."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Self

from devstack.tb_emulator.queues import (
    DEFAULT_QUEUES,
    PackCallback,
    ProcessingStrategy,
    ProcessingStrategyType,
    QueueConfig,
    RuleEngineQueue,
    RuleEngineQueues,
    SubmitStrategy,
    SubmitStrategyType,
    partition_of,
)
from tests.waiting import wait_until

NAME = "Updated"


@dataclass(frozen=True)
class Item:
    """A message as a queue sees it (queues.QueueItem)."""

    label: str
    originator_id: str
    queue_name: str | None = NAME

    def for_reprocessing(self) -> Self:
        return self


class Engine:
    """The rule engine's side: records what it was given; holds the labels in ``hold`` unanswered."""

    def __init__(self, *hold: str) -> None:
        self.hold = set(hold)
        self.seen: list[str] = []

    def __call__(self, item: Item, callback: PackCallback) -> None:
        self.seen.append(item.label)
        if item.label not in self.hold:
            callback.on_success()


def config(*, partitions: int = 1, per_partition: bool = True, pack_timeout_ms: int = 2000) -> QueueConfig:
    return QueueConfig(
        name=NAME,
        topic="tb_rule_engine.updated",
        poll_interval_ms=5,
        partitions=partitions,
        consumer_per_partition=per_partition,
        pack_processing_timeout_ms=pack_timeout_ms,
        submit_strategy=SubmitStrategy(type=SubmitStrategyType.BURST, batch_size=100),
        # 0 retries with a RETRY_* type: retry for ever, unless the consumer stops
        processing_strategy=ProcessingStrategy(type=ProcessingStrategyType.RETRY_ALL, retries=0),
    )


def originators(partitions: int) -> dict[int, str]:
    """One originator id per partition of ``partitions``."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < partitions:
        entity = str(uuid.uuid5(uuid.NAMESPACE_URL, f"device-{n}"))
        found.setdefault(partition_of(entity, partitions), entity)
        n += 1
    return found


async def settled(queue: RuleEngineQueue[Item]) -> None:
    await wait_until(lambda: queue.idle, what=f"queue idle: {queue.view()}")


async def test_a_queue_saved_at_run_time_consumes_at_once() -> None:
    engine = Engine()
    queues: RuleEngineQueues[Item] = RuleEngineQueues(DEFAULT_QUEUES, engine)
    queues.start()
    try:
        queues.save(config())
        queues.put(Item("a", originators(1)[0]))
        await settled(queues.by_name[NAME])
    finally:
        await queues.stop()
    assert engine.seen == ["a"]
    assert queues.by_name[NAME].stats.msgs == 1  # not Main's: the queue it names exists now


async def test_more_partitions_get_consumers_and_messages_spread_over_them() -> None:
    engine = Engine()
    queue: RuleEngineQueue[Item] = RuleEngineQueue(config(partitions=1), engine)
    queue.start()
    try:
        queue.update(config(partitions=4))
        ids = originators(4)
        for partition, entity in ids.items():
            queue.put(Item(f"p{partition}", entity))
        await settled(queue)
    finally:
        await queue.stop()
    assert sorted(engine.seen) == ["p0", "p1", "p2", "p3"]
    assert queue.stats.packs == 4  # one consumer per partition, each its own pack


async def test_fewer_partitions_leave_the_messages_of_the_partitions_gone_unpolled() -> None:
    """The in-memory queue keeps a topic's messages; nobody subscribes to partitions 1-3 any more."""
    engine = Engine()
    queue: RuleEngineQueue[Item] = RuleEngineQueue(config(partitions=4), engine)  # not started: they wait
    ids = originators(4)
    for partition, entity in ids.items():
        queue.put(Item(f"p{partition}", entity))
    queue.update(config(partitions=1))
    assert (queue.waiting, queue.stranded) == (1, 3)
    queue.start()
    try:
        queue.put(Item("new", ids[3]))  # partitioned by the new count: partition 0
        await settled(queue)
    finally:
        await queue.stop()
    assert sorted(engine.seen) == ["new", "p0"]
    assert queue.view()["stranded"] == 3


async def test_a_consumer_per_partition_change_lets_the_pack_in_progress_finish_first() -> None:
    """ "stuck" is never answered: its pack attempt times out (RETRY_ALL would retry it for ever), but
    the consumer was told to stop, so it is not retried; "next", put after the change, reaches the
    rule engine only once that attempt is over (the new consumer starts after the old one ended)."""
    engine = Engine("stuck")
    queue: RuleEngineQueue[Item] = RuleEngineQueue(config(pack_timeout_ms=500), engine)
    queue.start()
    try:
        entity = originators(1)[0]
        queue.put(Item("stuck", entity))
        await wait_until(lambda: bool(engine.seen), what="the stuck message submitted")
        queue.update(config(pack_timeout_ms=500, per_partition=False))
        queue.put(Item("next", entity))
        await asyncio.sleep(0.2)  # well inside the stuck attempt's 500 ms
        assert engine.seen == ["stuck"]
        await settled(queue)
    finally:
        await queue.stop()
    assert engine.seen == ["stuck", "next"]
    assert (queue.stats.timed_out, queue.stats.retries, queue.stats.skipped) == (1, 0, 1)
