"""One worker process: owns some stream shards, runs a consumer per shard, one MQTT dispatcher.

Everything is built from settings passed in; ``run`` returns after ``stop`` is set, having
finished (or handed back) the batches in hand and released its shards.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from cloud.agreement import Agreed, Agreement
from cloud.control.holds import Holds
from cloud.ledger import Ledger
from cloud.redis_text import as_text
from cloud.worker.commands import CommandSender
from cloud.worker.consumer import ConsumerConfig, ShardConsumer
from cloud.worker.control_consumer import ControlConsumer
from cloud.worker.control_executor import ControlExecutor
from cloud.worker.dispatcher import Dispatcher, Sent
from cloud.worker.dlq import DeadLetters
from cloud.worker.handler import GiftHandler
from cloud.worker.leases import ShardLeases
from cloud.worker.limits import Limits
from cloud.worker.liveness import Liveness
from cloud.worker.metrics import WorkerMetrics
from cloud.worker.reconcile import EdgeReconciler
from cloud.worker.rules import Rules
from cloud.worker.settings import WorkerProcessSettings
from cloud.worker.token_lease import DispatcherToken
from giftwheel.clock import Clock, SystemClock
from giftwheel.contracts import WORKER_GROUP, event_streams

log = structlog.get_logger(__name__)

# How long a cancelled task may take to finish before it is cancelled again (cancel_and_wait).
_RECANCEL_AFTER_S = 0.2


async def cancel_and_wait(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel the tasks and wait for them, cancelling again whatever survived a cancel.

    redis-py 8.2's asyncio client (with socket_timeout set, as ours is) can swallow a cancel that
    lands while a command is in flight: the command returns, the task carries on (``cancelling()``
    stays 1) and the next ``await asyncio.sleep`` of a loop waits on. Seen as a stopping worker
    stuck in its sweep loop (293 of 300 cancels swallowed in a loop of ZRANGEBYSCORE).
    """
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _done, pending = await asyncio.wait(pending, timeout=_RECANCEL_AFTER_S)
    await asyncio.gather(*tasks, return_exceptions=True)


def new_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        settings: WorkerProcessSettings,
        redis: Redis | RedisCluster,
        rules: Callable[[], Rules],
        *,
        worker_id: str | None = None,
        metrics: WorkerMetrics | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._settings = settings.worker
        # One clock for every time the worker reads (its ledger's stamps and deadlines, rate-limit
        # windows, lease heartbeats, waits); Redis TTLs run on Redis's own clock.
        self.clock = clock or SystemClock()
        self._redis = redis
        self._rules = rules
        self._named_devices: frozenset[str] = frozenset()
        self.worker_id = worker_id or new_worker_id()
        self.metrics = metrics or WorkerMetrics()
        self.streams = event_streams(settings.ingest.stream_shards)
        self.ledger = Ledger(redis, streams=self.streams, ttl_s=self._settings.ledger_ttl_s, clock=self.clock)
        self.dead_letters = DeadLetters(redis)
        self.dispatcher = Dispatcher(
            self._settings.mqtt,
            self.metrics,
            self._on_reply,
            client_id=f"{self._settings.mqtt.client_id}-{self.worker_id}"[:64],
            answers_wait_s=self._settings.rpc.attempt_lifetime_s,
        )
        self.holds = Holds(redis)
        self.sender = CommandSender(self.ledger, self.dispatcher, self._settings, self.metrics, self.holds)
        self.handler = GiftHandler(
            self.ledger,
            rules,
            Limits(redis, self._settings.limits, clock=self.clock),
            self.sender,
            self.metrics,
            self.holds,
            attempt_lifetime_s=self._settings.rpc.attempt_lifetime_s,
        )
        self.control = ControlConsumer(
            redis,
            ControlExecutor(
                self.ledger, self.holds, self.dispatcher, rpc_wait_s=self._settings.control.rpc_wait_s
            ),
            self._settings.control,
            self.metrics,
            consumer=self.worker_id,
            clock=self.clock,
        )
        self.reconciler = EdgeReconciler(
            redis,
            self.dispatcher,
            self.holds,
            self._settings.reconcile,
            self.metrics,
            worker_id=self.worker_id,
            rpc_wait_s=self._settings.control.rpc_wait_s,
            clock=self.clock,
        )
        self.leases = ShardLeases(
            redis, self.worker_id, self.streams, self._settings.lease_ttl_ms, clock=self.clock
        )
        self.token = DispatcherToken(redis, self.worker_id, self._settings.mqtt, clock=self.clock)
        self.liveness = Liveness(self._settings, clock=self.clock)
        self.agreement = Agreement(
            redis, Agreed(settings.ingest.stream_shards), role=f"worker {self.worker_id}"
        )
        self._consumers: dict[str, tuple[ShardConsumer, asyncio.Task[None]]] = {}
        self._unreachable_since: float | None = None
        self._registered = False
        self._handovers: set[asyncio.Task[None]] = set()

    def _on_reply(self, sent: Sent, reply: dict[str, object]) -> None:
        self.sender.on_reply(sent, dict(reply))

    def _start_consumer(self, stream: str) -> None:
        s = self._settings
        config = ConsumerConfig(
            s.batch_max_entries, s.read_block_ms, s.claim_idle_ms, s.max_deliveries, gather_ms=s.gather_ms
        )
        consumer = ShardConsumer(
            self._redis,
            stream,
            self.worker_id,
            self.handler,
            config,
            self.dead_letters,
            self.metrics,
            self.dispatcher.wait_ready,
            lambda: self.dispatcher.is_ready,
            clock=self.clock,
        )
        task = asyncio.create_task(consumer.run(), name=f"consume:{stream}")
        self._consumers[stream] = (consumer, task)
        log.info("shard_acquired", stream=stream, worker=self.worker_id)

    async def _hand_over(self, stream: str, *, lost: bool) -> None:
        consumer, task = self._consumers.pop(stream)
        if lost:
            task.cancel()  # someone else may own it already: stop at once, they reclaim our batch
        else:
            consumer.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if not lost:
            await self.leases.release(stream)
        log.info("shard_released", stream=stream, worker=self.worker_id, lost=lost)

    def _cut_off(self, now: float) -> bool:
        """True once ThingsBoard has been unreachable from here for ``release_shards_after_s``."""
        if self.dispatcher.is_ready:
            self._unreachable_since = None
            return False
        if self._unreachable_since is None:
            self._unreachable_since = now
        limit = self._settings.release_shards_after_s
        return bool(limit) and now - self._unreachable_since > limit

    async def _lease_loop(self) -> None:
        interval_s = self._settings.lease_ttl_ms / 3000
        while True:
            self.liveness.round_done()
            try:
                if self._cut_off(self.clock.monotonic()):
                    # Cut off from ThingsBoard (while others may not be): leave the group of live
                    # workers so the shards go to a worker that can dispatch; come back once connected.
                    if self.leases.owned or self._registered:
                        log.warning("shards_handed_over_while_thingsboard_unreachable", worker=self.worker_id)
                        await asyncio.gather(*(self._hand_over(s, lost=False) for s in list(self._consumers)))
                        await self.leases.leave()
                        self._registered = False
                        self.metrics.shards_owned.set(0)
                    await asyncio.sleep(interval_s)
                    continue
                self._registered = True
                await self._name_rule_devices()
                before = set(self.leases.owned)
                gained, dropped = await self.leases.tick()
                for stream in gained:
                    self._start_consumer(stream)
                for stream in dropped:
                    if stream in self._consumers:
                        task = asyncio.create_task(
                            self._hand_over(stream, lost=stream not in self.leases.owned)
                        )
                        self._handovers.add(task)
                        task.add_done_callback(self._handovers.discard)
                self.metrics.shards_owned.set(len(self.leases.owned))
                if gained or (before - self.leases.owned):
                    log.info("shards", owned=sorted(self.leases.owned), worker=self.worker_id)
            except (RedisError, OSError) as exc:
                log.warning("lease_tick_failed", error=str(exc))
            await asyncio.sleep(interval_s)

    async def _name_rule_devices(self) -> None:
        """The rules' devices are known to the feedback webhook before their first command (it
        refuses telemetry of devices giftwheel does not drive); again after a reload adds one."""
        devices = self._rules().devices()
        if not devices <= self._named_devices:
            await self.ledger.add_devices(devices)
            self._named_devices = devices

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.sweep_interval_s)
            try:
                for stream in list(self._consumers):
                    await self.sender.sweep(stream)
                await self._update_gauges()
            except (RedisError, OSError) as exc:
                log.warning("sweep_failed", error=str(exc))

    async def _update_gauges(self) -> None:
        for stream in self._consumers:
            for group in await self._redis.xinfo_groups(stream):
                name = group["name"]
                if as_text(name) == WORKER_GROUP:
                    lag = group.get("lag")
                    self.metrics.lag.labels(stream).set(int(lag or 0) + int(group.get("pending", 0)))
        self.metrics.dlq_size.set(await self.dead_letters.size())

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set.

        Raises SettingsDisagree before doing anything if its shard count is not the one the other
        processes on this Redis agreed on (cloud/agreement.py), TokenUnavailable if no dispatcher
        token is free for this worker, and TokenLost (after stopping cleanly) if another worker took
        over its token meanwhile.
        """
        log.info("worker_starting", worker=self.worker_id, streams=len(self.streams))
        await self.agreement.check()
        access_token = await self.token.acquire()
        background = [
            asyncio.create_task(self.dispatcher.run(access_token), name="dispatcher"),
            asyncio.create_task(self._lease_loop(), name="leases"),
            asyncio.create_task(self._sweep_loop(), name="sweeper"),
            asyncio.create_task(self.liveness.run(), name="liveness"),
            # Beside the shard consumers, so a stop never waits behind the gift backlog.
            asyncio.create_task(self.control.run(), name="control"),
            asyncio.create_task(self.reconciler.run(), name="reconcile"),
        ]
        self.liveness.ready(f"worker {self.worker_id}: dispatcher token claimed, taking shards")
        keeper = asyncio.create_task(self.token.keep(), name="dispatcher-token")
        stopping = asyncio.create_task(stop.wait(), name="stop")
        try:
            await asyncio.wait([stopping, keeper], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.liveness.stopping()
            await cancel_and_wait([stopping, keeper])  # no renewal of a token about to be released
            background[1].cancel()  # no new shards while stopping
            for consumer, _task in self._consumers.values():
                consumer.stop()
            tasks = [task for _c, task in self._consumers.values()]
            _done, slow = await asyncio.wait(tasks, timeout=5) if tasks else (set(), set())
            for task in slow:
                task.cancel()
            await asyncio.gather(*tasks, *self._handovers, return_exceptions=True)
            self._consumers.clear()
            await self.sender.drain()
            with contextlib.suppress(RedisError, OSError):
                await self.leases.leave()
            await cancel_and_wait(background)
            await self.dispatcher.close()
            with contextlib.suppress(RedisError, OSError):
                await self.token.release()
            log.info("worker_stopped", worker=self.worker_id)
        if keeper.done() and not keeper.cancelled() and (lost := keeper.exception()) is not None:
            raise lost
