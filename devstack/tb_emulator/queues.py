"""Rule-engine queues as ThingsBoard runs them: partitions, a consumer polling packs, the pack timeout,
the submit strategy that feeds a pack to the rule engine and the processing strategy that decides what
is submitted again, sleeping the consumer (and so its partitions) in between.

Each behaviour follows a ThingsBoard source file, all at thingsboard/thingsboard @dfe65d5
(unchanged in behaviour since v4.3.0.1); ``app/`` is application/src/main/java/org/thingsboard/server/:

- queue settings, their defaults and what is refused: common/data/.../queue/Queue.java,
  SubmitStrategy.java, ProcessingStrategy.java; the three queues a fresh install creates:
  app/service/install/DefaultSystemDataLoaderService.java (createQueues); the checks on save:
  dao/.../service/validator/QueueValidator.java and dao/.../service/DataValidator.java
- which partition a message lands in: common/queue/.../discovery/HashPartitionService.java (murmur3_128
  of the originator's id, modulo the queue's partitions), and an unknown queue name falling back to Main
  (getQueueKey)
- polling: common/queue/.../memory/InMemoryTbQueueConsumer.java and DefaultInMemoryStorage.java (the
  ``in-memory`` queue our compose file runs: up to 1,000 messages per partition per poll, a sleep of
  ``pollInterval`` after an empty poll), common/queue/.../common/consumer/MainQueueConsumerManager.java
  (one consumer per partition if consumerPerPartition, else one for all)
- a pack's life: app/service/queue/ruleengine/TbRuleEngineQueueConsumerManager.java (processMsgs),
  app/service/queue/TbMsgPackProcessingContext.java, TbMsgPackCallback.java
- submit strategies: app/service/queue/processing/*TbRuleEngineSubmitStrategy.java
- processing strategies: app/service/queue/processing/TbRuleEngineProcessingStrategyFactory.java

Not emulated: Kafka (its poll blocks instead of sleeping), isolated tenants' queues,
duplicateMsgToAllPartitions, rate-limit failures (counted as successes by TbMsgPackCallback).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import re
import uuid
from collections import Counter, deque
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, Protocol, Self, TypeVar

import mmh3
import orjson
import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

log = structlog.get_logger("tb_emulator.queues")

MAIN_QUEUE = "Main"  # DataConstants.MAIN_QUEUE_NAME: where a message with no queue name goes
# DefaultInMemoryStorage.get: the first message plus drainTo(999) per partition and poll
IN_MEMORY_POLL_MAX = 1000
# DataValidator.QUEUE_PATTERN, and the names it keeps for calculated fields
_QUEUE_PATTERN = re.compile(r"^[a-zA-Z0-9_.\-]+$")
_RESERVED_NAMES = frozenset({"CalculatedFields", "CalculatedFieldStates"})
_MAX_NAME = 255  # @Length's default max on Queue.name and Queue.topic


# ---------------------------------------------------------------------------------------- settings


class SubmitStrategyType(StrEnum):
    BURST = "BURST"
    BATCH = "BATCH"
    SEQUENTIAL_BY_ORIGINATOR = "SEQUENTIAL_BY_ORIGINATOR"
    SEQUENTIAL_BY_TENANT = "SEQUENTIAL_BY_TENANT"
    SEQUENTIAL = "SEQUENTIAL"


class ProcessingStrategyType(StrEnum):
    SKIP_ALL_FAILURES = "SKIP_ALL_FAILURES"
    SKIP_ALL_FAILURES_AND_TIMED_OUT = "SKIP_ALL_FAILURES_AND_TIMED_OUT"
    RETRY_ALL = "RETRY_ALL"
    RETRY_FAILED = "RETRY_FAILED"
    RETRY_TIMED_OUT = "RETRY_TIMED_OUT"
    RETRY_FAILED_AND_TIMED_OUT = "RETRY_FAILED_AND_TIMED_OUT"


class _TbJson(BaseModel):
    """ThingsBoard's JSON field names; a field left out is Java's default (0, false, null)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SubmitStrategy(_TbJson):
    type: SubmitStrategyType | None = None
    batch_size: int = Field(default=0, alias="batchSize")


class ProcessingStrategy(_TbJson):
    type: ProcessingStrategyType | None = None
    retries: int = 0  # 0 with a RETRY_* type: retry without end
    # Compared, as ThingsBoard does, with the failed share as a fraction (0..1): only values below 1 act
    failure_percentage: float = Field(default=0.0, alias="failurePercentage")
    pause_between_retries_s: int = Field(default=0, alias="pauseBetweenRetries")
    max_pause_between_retries_s: int = Field(default=0, alias="maxPauseBetweenRetries")


class QueueError(ValueError):
    """A queue ThingsBoard would refuse to save, or a queues file that cannot be read."""


class QueueConfig(_TbJson):
    """A rule-engine queue as ThingsBoard's Queue JSON has it (the body of POST /api/queues)."""

    name: str = ""
    topic: str = ""
    poll_interval_ms: int = Field(default=0, alias="pollInterval")
    partitions: int = 0
    consumer_per_partition: bool = Field(default=False, alias="consumerPerPartition")
    pack_processing_timeout_ms: int = Field(default=0, alias="packProcessingTimeout")
    submit_strategy: SubmitStrategy | None = Field(default=None, alias="submitStrategy")
    processing_strategy: ProcessingStrategy | None = Field(default=None, alias="processingStrategy")
    additional_info: dict[str, Any] | None = Field(default=None, alias="additionalInfo")

    @model_validator(mode="after")
    def _as_queue_validator(self) -> Self:
        """DataValidator.validate's field constraints (Queue's @Length on name and topic, checked by
        ConstraintValidator.validateFields), then QueueValidator.validateDataImpl, with their messages."""
        too_long = sorted(
            f"{field} length must be equal or less than {_MAX_NAME}"
            for field, value in (("name", self.name), ("topic", self.topic))
            if len(value.encode("utf-16-le")) // 2 > _MAX_NAME  # a Java String's length
        )
        if too_long:
            raise ValueError("Validation error: " + ", ".join(too_long))
        for field, value in (("name", self.name), ("topic", self.topic)):
            if not value.strip():
                raise ValueError(f"Queue {field} should be specified!")
            if not _QUEUE_PATTERN.match(value):
                raise ValueError(
                    f"Queue {field} contains a character other than ASCII alphanumerics, '.', '_' and '-'!"
                )
        if self.name in _RESERVED_NAMES:
            raise ValueError(
                f"The queue name '{self.name}' is not allowed. This name is reserved for internal use."
                " Please choose a different name."
            )
        if self.poll_interval_ms < 1:
            raise ValueError("Queue poll interval should be more then 0!")
        if self.partitions < 1:
            raise ValueError("Queue partitions should be more then 0!")
        if self.pack_processing_timeout_ms < 1:
            raise ValueError("Queue pack processing timeout should be more then 0!")
        submit = self.submit_strategy
        if submit is None:
            raise ValueError("Queue submit strategy can't be null!")
        if submit.type is None:
            raise ValueError("Queue submit strategy type can't be null!")
        if submit.type is SubmitStrategyType.BATCH and submit.batch_size < 1:
            raise ValueError("Queue submit strategy batch size should be more then 0!")
        processing = self.processing_strategy
        if processing is None:
            raise ValueError("Queue processing strategy can't be null!")
        if processing.type is None:
            raise ValueError("Queue processing strategy type can't be null!")
        if processing.retries < 0:
            raise ValueError("Queue processing strategy retries can't be less then 0!")
        if not 0 <= processing.failure_percentage <= 100:
            raise ValueError(
                "Queue processing strategy failure percentage should be in a range from 0 to 100!"
            )
        if processing.pause_between_retries_s < 0:
            raise ValueError("Queue processing strategy pause between retries can't be less then 0!")
        if processing.max_pause_between_retries_s < processing.pause_between_retries_s:
            raise ValueError(
                "Queue processing strategy MAX pause between retries can't be less then pause"
                " between retries!"
            )
        return self

    @property
    def submit(self) -> SubmitStrategy:
        assert self.submit_strategy is not None  # the validator refuses None
        return self.submit_strategy

    @property
    def processing(self) -> ProcessingStrategy:
        assert self.processing_strategy is not None
        return self.processing_strategy


def _queue(
    name: str,
    topic: str,
    submit: SubmitStrategyType,
    batch_size: int,
    processing: ProcessingStrategyType,
    retries: int,
    pause_s: int,
) -> QueueConfig:
    return QueueConfig(
        name=name,
        topic=topic,
        poll_interval_ms=25,
        partitions=10,
        consumer_per_partition=True,
        pack_processing_timeout_ms=2000,
        submit_strategy=SubmitStrategy(type=submit, batch_size=batch_size),
        processing_strategy=ProcessingStrategy(
            type=processing,
            retries=retries,
            failure_percentage=0,
            pause_between_retries_s=pause_s,
            max_pause_between_retries_s=pause_s,
        ),
    )


# DefaultSystemDataLoaderService.createQueues: what every fresh ThingsBoard has. HighPriority's 0 retries
# mean "retry for ever", 5 s apart.
DEFAULT_QUEUES: tuple[QueueConfig, ...] = (
    _queue("Main", "tb_rule_engine.main", SubmitStrategyType.BURST, 1000,
           ProcessingStrategyType.SKIP_ALL_FAILURES, 3, 3),
    _queue("HighPriority", "tb_rule_engine.hp", SubmitStrategyType.BURST, 100,
           ProcessingStrategyType.RETRY_FAILED_AND_TIMED_OUT, 0, 5),
    _queue("SequentialByOriginator", "tb_rule_engine.sq", SubmitStrategyType.SEQUENTIAL_BY_ORIGINATOR, 100,
           ProcessingStrategyType.RETRY_FAILED_AND_TIMED_OUT, 3, 5),
)  # fmt: skip


def load_queue_file(path: Path) -> QueueConfig:
    """One queue in ThingsBoard's Queue JSON (what a sysadmin POSTs to /api/queues)."""
    try:
        return QueueConfig.model_validate(orjson.loads(path.read_bytes()))
    except (OSError, orjson.JSONDecodeError) as exc:
        raise QueueError(f"cannot read queue {path}: {exc}") from exc
    except ValidationError as exc:
        raise QueueError(f"queue {path} would be refused: {exc}") from exc


def with_queues(
    configs: Iterable[QueueConfig], base: Iterable[QueueConfig] = DEFAULT_QUEUES
) -> list[QueueConfig]:
    """``base`` (a fresh install's queues) with ``configs`` added, a same-named one replacing its queue.

    QueueValidator refuses a second queue with the same topic; so does this.
    """
    by_name = {q.name: q for q in base}
    for config in configs:
        by_name[config.name] = config
    topics = Counter(q.topic for q in by_name.values())
    clashes = sorted(topic for topic, n in topics.items() if n > 1)
    if clashes:
        raise QueueError(f"Queue with topic: {clashes[0]} already exists!")
    return list(by_name.values())


@functools.lru_cache(maxsize=65_536)  # a few microseconds a message otherwise; devices are few
def partition_of(entity_id: str, partitions: int) -> int:
    """HashPartitionService.resolve: |murmur3_128(msb, lsb).asInt() % partitions|.

    Guava's Hasher.putLong writes little-endian, and asInt() is the hash's first four bytes.
    """
    value = uuid.UUID(entity_id).int
    key = (value >> 64).to_bytes(8, "little") + (value & (1 << 64) - 1).to_bytes(8, "little")
    return abs(int.from_bytes(mmh3.hash_bytes(key)[:4], "little", signed=True)) % partitions


# ---------------------------------------------------------------------------------------- runtime


class QueueItem(Protocol):
    """What a queue needs to know of a message it carries (ThingsBoard's ToRuleEngineMsg)."""

    @property
    def queue_name(self) -> str | None: ...
    @property
    def originator_id(self) -> str: ...
    def for_reprocessing(self) -> Self:
        """The message as AbstractTbRuleEngineSubmitStrategy.update submits it again."""
        ...


T = TypeVar("T", bound=QueueItem)
MsgId = int
Submit = Callable[[MsgId, T], None]

_TENANT = "tenant"  # the emulator has one tenant: SEQUENTIAL_BY_TENANT is SEQUENTIAL


class PackCallback:
    """TbMsgPackCallback: how the rule engine tells the pack that one message is done."""

    __slots__ = ("_ctx", "_id")

    def __init__(self, ctx: PackContext[Any], msg_id: MsgId) -> None:
        self._ctx = ctx
        self._id = msg_id

    def on_success(self) -> None:
        self._ctx.on_success(self._id)

    def on_failure(self, error: str) -> None:
        self._ctx.on_failure(self._id, error)

    @property
    def valid(self) -> bool:
        """isMsgValid: false once its pack gave up on it (timed out, under a strategy that skips those)."""
        return not self._ctx.canceled


class _SubmitStrategy(Generic[T]):
    """AbstractTbRuleEngineSubmitStrategy: the pack's messages in order, each with a pack-wide id."""

    def __init__(self, ids: Iterable[MsgId]) -> None:
        self._ids = iter(ids)
        self.ordered: list[tuple[MsgId, T]] = []
        self._stopped = False
        self._submit: Submit[T] | None = None

    def init(self, items: list[T]) -> None:
        self.ordered = [(next(self._ids), item) for item in items]

    def pending_map(self) -> dict[MsgId, T]:
        return dict(self.ordered)

    def update(self, reprocess: Collection[MsgId]) -> None:
        self.ordered = [(i, item.for_reprocessing()) for i, item in self.ordered if i in reprocess]

    def submit_attempt(self, submit: Submit[T]) -> None:
        self._submit = submit
        self._start()

    def on_success(self, msg_id: MsgId) -> None:
        if not self._stopped:
            self._next_after(msg_id)

    def stop(self) -> None:
        self._stopped = True

    def _send(self, msg_id: MsgId, item: T) -> None:
        assert self._submit is not None
        self._submit(msg_id, item)

    def _start(self) -> None:
        raise NotImplementedError

    def _next_after(self, msg_id: MsgId) -> None:
        """What a message's success lets go next (nothing for BURST)."""


class _Burst(_SubmitStrategy[T]):
    """BurstTbRuleEngineSubmitStrategy: every message at once."""

    def _start(self) -> None:
        for msg_id, item in self.ordered:
            self._send(msg_id, item)


class _Batch(_SubmitStrategy[T]):
    """BatchTbRuleEngineSubmitStrategy: ``batch_size`` at a time; the next batch once all of this one
    succeeded (a failure holds the rest of the pack back until the pack times out)."""

    def __init__(self, ids: Iterable[MsgId], batch_size: int) -> None:
        super().__init__(ids)
        self._size = batch_size
        self._index = 0
        self._waiting: set[MsgId] = set()

    def update(self, reprocess: Collection[MsgId]) -> None:
        super().update(reprocess)
        self._index = 0

    def _start(self) -> None:
        start = min(self._index * self._size, len(self.ordered))
        batch = self.ordered[start : start + self._size]
        self._waiting = {msg_id for msg_id, _ in batch}
        for msg_id, item in batch:
            self._send(msg_id, item)

    def _next_after(self, msg_id: MsgId) -> None:
        if msg_id in self._waiting:
            self._waiting.discard(msg_id)
            if not self._waiting:
                self._index += 1
                self._start()


class _SequentialByEntity(_SubmitStrategy[T]):
    """SequentialByEntityIdTbRuleEngineSubmitStrategy: per entity, one message at a time, the next after
    the previous one's success (a failure holds that entity back until the pack times out)."""

    def __init__(self, ids: Iterable[MsgId], entity: Callable[[T], str]) -> None:
        super().__init__(ids)
        self._entity = entity
        self._by_entity: dict[str, deque[tuple[MsgId, T]]] = {}
        self._entity_of: dict[MsgId, str] = {}

    def init(self, items: list[T]) -> None:
        super().init(items)
        self._index_entities()

    def update(self, reprocess: Collection[MsgId]) -> None:
        super().update(reprocess)
        self._index_entities()

    def _index_entities(self) -> None:
        self._by_entity = {}
        self._entity_of = {}
        for msg_id, item in self.ordered:
            entity = self._entity(item)
            self._entity_of[msg_id] = entity
            self._by_entity.setdefault(entity, deque()).append((msg_id, item))

    def _start(self) -> None:
        for line in list(self._by_entity.values()):
            if line:
                self._send(*line[0])

    def _next_after(self, msg_id: MsgId) -> None:
        line = self._by_entity.get(self._entity_of.get(msg_id, ""))
        if line and line[0][0] == msg_id:
            line.popleft()
            if line:
                self._send(*line[0])


class _Sequential(_SubmitStrategy[T]):
    """SequentialTbRuleEngineSubmitStrategy: the whole pack one message at a time."""

    def __init__(self, ids: Iterable[MsgId]) -> None:
        super().__init__(ids)
        self._index = 0
        self._expected: MsgId | None = None

    def _start(self) -> None:
        self._index = 0
        self._send_current()

    def _send_current(self) -> None:
        if self._index < len(self.ordered):
            msg_id, item = self.ordered[self._index]
            self._expected = msg_id
            self._send(msg_id, item)

    def _next_after(self, msg_id: MsgId) -> None:
        if msg_id == self._expected:
            self._index += 1
            self._send_current()


def _new_submit_strategy(config: SubmitStrategy, ids: Iterable[MsgId]) -> _SubmitStrategy[Any]:
    """TbRuleEngineSubmitStrategyFactory.newInstance."""
    match config.type:
        case SubmitStrategyType.BURST:
            return _Burst(ids)
        case SubmitStrategyType.BATCH:
            return _Batch(ids, config.batch_size)
        case SubmitStrategyType.SEQUENTIAL_BY_ORIGINATOR:
            return _SequentialByEntity(ids, lambda item: item.originator_id)
        case SubmitStrategyType.SEQUENTIAL_BY_TENANT:
            return _SequentialByEntity(ids, lambda item: _TENANT)
        case _:
            return _Sequential(ids)


class PackContext(Generic[T]):
    """TbMsgPackProcessingContext: one submit attempt of a pack, waiting for every message's callback."""

    def __init__(self, strategy: _SubmitStrategy[T], skip_timeout_msgs: bool) -> None:
        self._strategy = strategy
        self._skip_timeout_msgs = skip_timeout_msgs
        self.pending = strategy.pending_map()
        self.success: dict[MsgId, T] = {}
        self.failed: dict[MsgId, T] = {}
        self.errors: list[str] = []
        self._cleaned = False
        self._all_done = asyncio.Event()

    def on_success(self, msg_id: MsgId) -> None:
        item = self.pending.pop(msg_id, None)
        if item is None:
            return
        self.success[msg_id] = item
        self._strategy.on_success(msg_id)
        if not self.pending:
            self._all_done.set()

    def on_failure(self, msg_id: MsgId, error: str) -> None:
        item = self.pending.pop(msg_id, None)
        if item is None:
            return
        self.failed[msg_id] = item
        self.errors.append(error)
        if not self.pending:
            self._all_done.set()

    async def wait(self, timeout_s: float) -> bool:
        """False if messages were still pending after ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._all_done.wait(), timeout_s)
        return self._all_done.is_set()

    @property
    def canceled(self) -> bool:
        return self._skip_timeout_msgs and self._cleaned

    def cleanup(self) -> None:
        self._cleaned = True
        self.pending = {}
        self.success = {}
        self.failed = {}


@dataclass(frozen=True, slots=True)
class Decision:
    """TbRuleEngineProcessingDecision, plus the consumer's sleep before the next attempt."""

    commit: bool
    reprocess: frozenset[MsgId] = frozenset()
    pause_s: float = 0.0


class _ProcessingStrategy:
    """TbRuleEngineProcessingStrategyFactory's SkipStrategy and RetryStrategy, one per pack."""

    def __init__(self, config: ProcessingStrategy) -> None:
        kind = config.type
        self.retrying = kind not in (
            ProcessingStrategyType.SKIP_ALL_FAILURES,
            ProcessingStrategyType.SKIP_ALL_FAILURES_AND_TIMED_OUT,
        )
        # Timed-out messages are canceled by RetryStrategy and SKIP_ALL_FAILURES_AND_TIMED_OUT
        self.skip_timeout_msgs = kind is not ProcessingStrategyType.SKIP_ALL_FAILURES
        self.retry_success = kind is ProcessingStrategyType.RETRY_ALL
        self.retry_failed = kind in (
            ProcessingStrategyType.RETRY_ALL,
            ProcessingStrategyType.RETRY_FAILED,
            ProcessingStrategyType.RETRY_FAILED_AND_TIMED_OUT,
        )
        self.retry_timeout = kind in (
            ProcessingStrategyType.RETRY_ALL,
            ProcessingStrategyType.RETRY_TIMED_OUT,
            ProcessingStrategyType.RETRY_FAILED_AND_TIMED_OUT,
        )
        self._max_retries = config.retries
        self._max_failure = config.failure_percentage
        self._pause_s = config.pause_between_retries_s
        self._max_pause_s = config.max_pause_between_retries_s
        self._retry_count = 0
        self._initial_total = 0

    def analyze(self, ctx: PackContext[Any], timed_out: bool) -> Decision:
        if not self.retrying or (not timed_out and not ctx.pending and not ctx.failed):
            return Decision(commit=True)
        if self._retry_count == 0:
            self._initial_total = len(ctx.pending) + len(ctx.failed) + len(ctx.success)
        self._retry_count += 1
        failed_count = len(ctx.failed) + len(ctx.pending)
        if self._max_retries > 0 and self._retry_count > self._max_retries:
            return Decision(commit=True)
        if self._max_failure > 0 and failed_count / self._initial_total > self._max_failure:
            return Decision(commit=True)
        reprocess: set[MsgId] = set()
        for wanted, part in (
            (self.retry_failed, ctx.failed),
            (self.retry_timeout, ctx.pending),
            (self.retry_success, ctx.success),
        ):
            if wanted:
                reprocess.update(part)
        if not reprocess:
            return Decision(commit=True)
        pause_s = self._pause_s
        if pause_s > 0 and self._max_pause_s > pause_s:
            self._pause_s = min(self._max_pause_s, pause_s * 2)
        return Decision(commit=False, reprocess=frozenset(reprocess), pause_s=pause_s)


@dataclass(slots=True)
class QueueStats:
    """Counted per submit attempt: a message retried twice counts three submissions."""

    packs: int = 0
    msgs: int = 0  # messages polled
    submitted: int = 0  # submissions to the rule engine, re-submissions included
    succeeded: int = 0  # attempts that ended in success before the pack's deadline
    failed: int = 0  # attempts that ended in failure before the pack's deadline
    timed_out: int = 0  # pack attempts that hit packProcessingTimeout
    timed_out_msgs: int = 0  # attempts still pending at that deadline
    retries: int = 0  # re-submitted messages
    skipped: int = 0  # failed or timed-out messages the strategy gave up on (committed anyway)
    pauses: int = 0  # consumer sleeps between attempts

    def view(self) -> dict[str, int]:
        return {
            "packs": self.packs,
            "msgs": self.msgs,
            "submitted": self.submitted,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "timedOutPacks": self.timed_out,
            "timedOutMsgs": self.timed_out_msgs,
            "retries": self.retries,
            "skipped": self.skipped,
            "pauses": self.pauses,
        }


Processor = Callable[[T, PackCallback], None]


def _consumer_groups(config: QueueConfig) -> list[list[int]]:
    """MainQueueConsumerManager.createConsumerWrapper: one consumer per partition, or one for all."""
    partitions = list(range(config.partitions))
    return [[p] for p in partitions] if config.consumer_per_partition else [partitions]


class RuleEngineQueue(Generic[T]):
    """One queue: its partitions (in-memory topics) and consumers, each running packs one at a time."""

    def __init__(self, config: QueueConfig, processor: Processor[T]) -> None:
        self.config = config
        self._processor = processor
        self.stats = QueueStats()
        self._partitions: list[deque[T]] = [deque() for _ in range(config.partitions)]
        self._consumers = [_Consumer(self, group) for group in _consumer_groups(config)]
        self._consumer_of = {p: c for c in self._consumers for p in c.partitions}
        # consumers told to stop by a settings update: they finish the pack attempt in progress
        self._retiring: list[_Consumer] = []
        self._restarts: set[asyncio.Task[None]] = set()
        self._running = False
        self._ids = itertools.count()

    def put(self, item: T) -> None:
        index = partition_of(item.originator_id, self.config.partitions)
        self._partitions[index].append(item)
        self._consumer_of[index].wake()

    def start(self) -> None:
        self._running = True
        for consumer in self._consumers:
            consumer.start()

    async def stop(self) -> None:
        self._running = False
        for task in list(self._restarts):
            task.cancel()
        for consumer in (*self._consumers, *self._retiring):
            await consumer.stop()

    def update(self, config: QueueConfig) -> None:
        """A saved queue's new settings, applied as ThingsBoard applies its queue update event
        (DefaultTbRuleEngineConsumerService.updateQueues -> TbRuleEngineQueueConsumerManager.update,
        i.e. common/queue/.../common/consumer/MainQueueConsumerManager.java doUpdate; then
        HashPartitionService.updateQueues and the partition change event, whose
        ConsumerPerPartitionWrapper / SingleConsumerWrapper.updatePartitions take the new partitions):

        - pollInterval, packProcessingTimeout, the submit and processing strategies: read by the next
          poll and the next pack; a pack in progress keeps the settings it was polled with;
        - consumerPerPartition changed: every consumer stops after its pack attempt in progress (no
          retry follows), and once all have, the new consumers start;
        - partitions changed: messages are partitioned by the new count from now on; with a consumer
          per partition, a partition gone has its consumer stopped after its pack attempt and a new
          one gets a consumer; a single consumer polls the new set from its next poll. Messages left
          in a partition beyond the new count stay there unpolled, as the in-memory queue keeps a
          topic's messages (``stranded`` in the view).
        """
        old = self.config
        self.config = config
        self._retiring = [c for c in self._retiring if not c.done]
        while len(self._partitions) < config.partitions:
            self._partitions.append(deque())
        if config.consumer_per_partition != old.consumer_per_partition:
            retired, self._consumers = (
                self._consumers,
                [_Consumer(self, group) for group in _consumer_groups(config)],
            )
            self._retire(retired, then_start=self._consumers)
        elif config.partitions != old.partitions and config.consumer_per_partition:
            kept = [c for c in self._consumers if c.partitions[0] < config.partitions]
            added = [_Consumer(self, [p]) for p in range(old.partitions, config.partitions)]
            self._retire([c for c in self._consumers if c not in kept], then_start=[])
            self._consumers = kept + added
            if self._running:
                for consumer in added:
                    consumer.start()
        elif config.partitions != old.partitions:
            self._consumers[0].partitions = list(range(config.partitions))
        self._consumer_of = {p: c for c in self._consumers for p in c.partitions}
        for consumer in self._consumers:
            consumer.wake()  # a shorter poll interval takes effect now, not after the old one

    def _retire(self, consumers: list[_Consumer], then_start: list[_Consumer]) -> None:
        for consumer in consumers:
            consumer.initiate_stop()
        self._retiring.extend(consumers)
        if self._running and (consumers or then_start):
            task = asyncio.get_running_loop().create_task(self._start_after(consumers, then_start))
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)

    async def _start_after(self, retired: list[_Consumer], consumers: list[_Consumer]) -> None:
        """MainQueueConsumerManager: awaitCompletion of the stopped consumers, then the new ones."""
        for consumer in retired:
            await consumer.finished()
        for consumer in consumers:
            if consumer in self._consumers:  # not replaced again meanwhile
                consumer.start()

    @property
    def waiting(self) -> int:
        """Messages in the partitions not polled yet."""
        return sum(len(p) for p in self._partitions[: self.config.partitions])

    @property
    def stranded(self) -> int:
        """Messages in partitions beyond the queue's partition count: no consumer polls them."""
        return sum(len(p) for p in self._partitions[self.config.partitions :])

    @property
    def idle(self) -> bool:
        """Nothing waiting and no pack in progress (a pass a pack gave up on may still be running)."""
        return (
            not self.waiting
            and not self._restarts
            and not any(c.busy for c in (*self._consumers, *self._retiring))
        )

    def view(self) -> dict[str, Any]:
        return {
            "name": self.config.name,
            "waiting": self.waiting,
            "stranded": self.stranded,
            **self.stats.view(),
        }

    def _poll(self, partitions: list[int]) -> list[T]:
        """InMemoryTbQueueConsumer.poll: up to IN_MEMORY_POLL_MAX messages from each partition."""
        pack: list[T] = []
        for index in partitions:
            part = self._partitions[index]
            for _ in range(min(len(part), IN_MEMORY_POLL_MAX)):
                pack.append(part.popleft())
        return pack

    def _submit(self, ctx: PackContext[T], msg_id: MsgId, item: T) -> None:
        self.stats.submitted += 1
        # forwardToRuleEngineActor: a tell to the rule chain actor, which handles it after this returns
        asyncio.get_running_loop().call_soon(self._processor, item, PackCallback(ctx, msg_id))

    async def _process_pack(self, items: list[T], consumer: _Consumer) -> None:
        """TbRuleEngineQueueConsumerManager.processMsgs, with the settings the pack was polled with."""
        config = self.config
        stats = self.stats
        stats.packs += 1
        stats.msgs += len(items)
        strategy = _new_submit_strategy(config.submit, self._ids)
        decider = _ProcessingStrategy(config.processing)
        strategy.init(items)
        while True:
            ctx: PackContext[T] = PackContext(strategy, decider.skip_timeout_msgs)
            strategy.submit_attempt(functools.partial(self._submit, ctx))
            timed_out = not await ctx.wait(config.pack_processing_timeout_ms / 1000)
            if timed_out:
                stats.timed_out += 1
                log.info("pack timed out", queue=config.name, pending=len(ctx.pending))
            if ctx.failed:
                log.info("pack failures", queue=config.name, failed=len(ctx.failed), first=ctx.errors[0])
            decision = decider.analyze(ctx, timed_out)
            stats.succeeded += len(ctx.success)
            stats.failed += len(ctx.failed)
            stats.timed_out_msgs += len(ctx.pending)
            # A stopped consumer leaves processMsgs' loop before the next attempt: what the strategy
            # would have re-submitted is given up on (the in-memory queue has no redelivery)
            if decision.commit or consumer.stopping():
                stats.skipped += len(ctx.failed) + len(ctx.pending)
            else:
                stats.retries += len(decision.reprocess)
            if decision.pause_s > 0:
                # RetryStrategy sleeps the consumer thread (in analyze, so a stopped consumer too):
                # nothing of its partitions is polled meanwhile, and the pass that timed out is not
                # canceled until the sleep ends
                stats.pauses += 1
                await asyncio.sleep(decision.pause_s)
            ctx.cleanup()
            if decision.commit or consumer.stopping():
                strategy.stop()
                return
            strategy.update(decision.reprocess)


class _Consumer:
    """One consumer loop (MainQueueConsumerManager.consumerLoop) over some partitions of a queue."""

    def __init__(self, queue: RuleEngineQueue[Any], partitions: list[int]) -> None:
        self.queue = queue
        self.partitions = partitions
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.busy = False  # processing a pack
        self._stop_requested = False

    def wake(self) -> None:
        self._wakeup.set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def initiate_stop(self) -> None:
        """TbQueueConsumerTask.initiateStop: the loop ends after the pack attempt in progress."""
        self._stop_requested = True
        self._wakeup.set()

    def stopping(self) -> bool:
        return self._stop_requested

    @property
    def done(self) -> bool:
        return self._task is None or self._task.done()

    async def finished(self) -> None:
        """TbQueueConsumerTask.awaitCompletion."""
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._task)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        queue = self.queue
        loop = asyncio.get_running_loop()
        while not self.stopping():
            self._wakeup.clear()
            pack = queue._poll(self.partitions)
            if pack:
                self.busy = True
                try:
                    await queue._process_pack(pack, self)
                except Exception:  # the consumer loop survives anything, as ThingsBoard's does
                    log.exception("pack processing failed", queue=queue.config.name)
                finally:
                    self.busy = False
                continue
            # An empty poll sleeps pollInterval (read at each poll, as consumer.poll(config.getPollInterval())
            # does), then polls again: a message that arrives meanwhile is taken at the next tick. Waiting
            # for it and then for that tick is the same timing without waking every interval.
            idle_since = loop.time()
            await self._wakeup.wait()
            if self.stopping():
                return
            interval_s = queue.config.poll_interval_ms / 1000
            await asyncio.sleep(interval_s - (loop.time() - idle_since) % interval_s)


class RuleEngineQueues(Generic[T]):
    """Every queue by name; a message goes to the queue it names, Main if none."""

    def __init__(self, configs: Iterable[QueueConfig], processor: Processor[T]) -> None:
        self._processor = processor
        self.by_name: dict[str, RuleEngineQueue[T]] = {c.name: RuleEngineQueue(c, processor) for c in configs}
        if MAIN_QUEUE not in self.by_name:
            raise QueueError(f"the {MAIN_QUEUE} queue cannot be left out: messages without a queue go there")
        self._unknown_warned: set[str] = set()
        self._running = False

    def put(self, item: T) -> None:
        name = item.queue_name or MAIN_QUEUE
        queue = self.by_name.get(name)
        if queue is None:
            # HashPartitionService.getQueueKey: a queue nobody has (deleted under a profile) is Main's
            if name not in self._unknown_warned:
                self._unknown_warned.add(name)
                log.warning("no such rule-engine queue, using Main", queue=name)
            queue = self.by_name[MAIN_QUEUE]
        queue.put(item)

    def save(self, config: QueueConfig) -> None:
        """A queue saved at run time (the admin REST API), as DefaultTbRuleEngineConsumerService.updateQueues
        handles the queue update event DefaultTbQueueService.saveQueue sends: a queue it has no consumer
        for gets one (createConsumer), started if the rule engine runs; an existing one is updated
        (RuleEngineQueue.update). Whether ThingsBoard would save it (QueueValidator) is the caller's
        check."""
        queue = self.by_name.get(config.name)
        if queue is None:
            queue = RuleEngineQueue(config, self._processor)
            self.by_name[config.name] = queue
            if self._running:
                queue.start()
            log.info("rule-engine queue created", queue=config.name)
        else:
            queue.update(config)
            log.info("rule-engine queue updated", queue=config.name)

    def start(self) -> None:
        self._running = True
        for queue in self.by_name.values():
            queue.start()

    async def stop(self) -> None:
        self._running = False
        for queue in list(self.by_name.values()):
            await queue.stop()

    @property
    def idle(self) -> bool:
        """Every queue idle: what a test waits for before it looks at what the rule engine did."""
        return all(queue.idle for queue in self.by_name.values())

    def view(self) -> list[dict[str, Any]]:
        return [queue.view() for queue in self.by_name.values()]
