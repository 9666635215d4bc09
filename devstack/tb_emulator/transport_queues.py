"""The two polled in-memory queues between the device actor and the MQTT transport in a monolith
ThingsBoard running ``queue.type: in-memory`` (what deploy/compose.yaml runs).

All at thingsboard/thingsboard @dfe65d5; ``app/`` is application/src/main/java/org/thingsboard/server/,
``transport/`` common/transport/transport-api/src/main/java/org/thingsboard/server/common/transport/:

- device actor -> transport, the **transport notifications** queue: the device actor's sendToTransport
  (app/actors/device/DeviceActorMessageProcessor.java: an RPC request, and each re-send of pending
  ones) calls DefaultTbCoreToTransportService.process (app/service/transport/), which sends to the
  ``tb_transport.notifications.<nodeId>`` topic through the producer
  InMemoryMonolithQueueFactory.createTransportNotificationsMsgProducer gives; nothing short-circuits
  it in a monolith. transport/service/DefaultTransportService.java polls that one topic with a
  QueueConsumerManager every ``queue.transport.poll_interval`` (thingsboard.yml, 25 ms) and
  processNotificationMsgs hands each message to the session's listener (processToTransportMsg), which
  writes the RPC to the MQTT session.
- transport -> device actor, the **core** queue: a device's (or a gateway's, for a sub-device:
  common/transport/mqtt/.../session/AbstractGatewaySessionHandler.processRpcResponseMsg) RPC reply is
  DefaultTransportService.process(sessionInfo, ToDeviceRpcResponseMsg) -> sendToDeviceActor ->
  sendToCore: the ``tb_core`` topic, partitioned by the device's id (HashPartitionService.resolve,
  TB_CORE). app/service/queue/DefaultTbCoreConsumerService.java polls it with a
  MainQueueConsumerManager (``queue.core``: poll-interval 25 ms, partitions 10, consumer-per-partition
  true, pack-processing-timeout 2000 ms) and processMsgs forwards each message to the device actor
  (forwardToDeviceActor), waiting for the actor's callbacks up to the pack timeout, then commits
  whatever is left.

Not queued, because the monolith calls directly: the rule engine's RPC request to the device actor
(app/service/rpc/DefaultTbRuleEngineRpcService.sendRpcRequestToDevice: the core partition is this
node's, ``tpi.isMyPartition()``, so DefaultTbCoreDeviceRpcService.forwardRpcRequestToDeviceActor tells
the actor), and the actor's answer back to the rule engine (DefaultTbCoreDeviceRpcService
.sendRpcResponseToTbRuleEngine: the origin service is this node, so
DefaultTbRuleEngineRpcService.processRpcResponseFromDevice is called).

Both loops are the rule-engine queues' (queues.py): QueueConsumerManager.consumerLoop and
MainQueueConsumerManager poll InMemoryTbQueueConsumer.poll, which sleeps the whole interval after an
empty poll; a pack is processed before the next poll. So they are RuleEngineQueues: BURST (every
message of the pack handed on at once) and nothing retried (a pack is committed whatever failed or
timed out). Only the RPC messages ride them here; attribute notifications, RPC delivery statuses
(SENT, DELIVERED) and session events are still applied at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self

import structlog

from devstack.tb_emulator.queues import (
    PackCallback,
    ProcessingStrategy,
    ProcessingStrategyType,
    QueueConfig,
    RuleEngineQueue,
    SubmitStrategy,
    SubmitStrategyType,
)

log = structlog.get_logger("tb_emulator.transport_queues")

# ModelConstants.NULL_UUID: the key DefaultTbCoreToTransportService puts on every notification
NULL_UUID = "00000000-0000-0000-0000-000000000000"


@dataclass(frozen=True, slots=True)
class TransportQueueSettings:
    """thingsboard.yml's defaults (queue.core.*, queue.transport.poll_interval)."""

    core_poll_interval_ms: int = 25  # TB_QUEUE_CORE_POLL_INTERVAL_MS
    core_partitions: int = 10  # TB_QUEUE_CORE_PARTITIONS
    core_pack_processing_timeout_ms: int = 2000  # TB_QUEUE_CORE_PACK_PROCESSING_TIMEOUT_MS
    core_consumer_per_partition: bool = True  # TB_QUEUE_CORE_CONSUMER_PER_PARTITION
    transport_poll_interval_ms: int = 25  # TB_QUEUE_TRANSPORT_NOTIFICATIONS_POLL_INTERVAL_MS


DEFAULT_TRANSPORT_QUEUES = TransportQueueSettings()


@dataclass(frozen=True, slots=True)
class ActorMsg:
    """A message on one of these queues: what its consumer does with it, keyed by ``originator_id``."""

    originator_id: str
    action: Callable[[], object]
    queue_name: str | None = None

    def for_reprocessing(self) -> Self:
        return self  # never asked: nothing on these queues is retried


def _handle(item: ActorMsg, callback: PackCallback) -> None:
    """processMsgs / processNotificationMsgs: a message that throws is logged and the pack goes on."""
    try:
        item.action()
    except Exception as exc:
        log.exception("queued message failed", queue_key=item.originator_id)
        callback.on_failure(repr(exc))
        return
    callback.on_success()


def _config(name: str, poll_ms: int, partitions: int, per_partition: bool, timeout_ms: int) -> QueueConfig:
    return QueueConfig(
        name=name,
        topic=name,
        poll_interval_ms=poll_ms,
        partitions=partitions,
        consumer_per_partition=per_partition,
        pack_processing_timeout_ms=timeout_ms,
        submit_strategy=SubmitStrategy(type=SubmitStrategyType.BURST),
        processing_strategy=ProcessingStrategy(type=ProcessingStrategyType.SKIP_ALL_FAILURES_AND_TIMED_OUT),
    )


class TransportQueues:
    """The core queue (to the device actor) and the transport notifications queue (to the session)."""

    def __init__(self, settings: TransportQueueSettings) -> None:
        self.core: RuleEngineQueue[ActorMsg] = RuleEngineQueue(
            _config(
                "tb_core",
                settings.core_poll_interval_ms,
                settings.core_partitions,
                settings.core_consumer_per_partition,
                settings.core_pack_processing_timeout_ms,
            ),
            _handle,
        )
        # One topic per transport node, one consumer; processNotificationMsgs does not wait for the
        # listeners (transportCallbackExecutor), so the pack timeout is never reached.
        self.notifications: RuleEngineQueue[ActorMsg] = RuleEngineQueue(
            _config(
                "tb_transport.notifications",
                settings.transport_poll_interval_ms,
                1,
                False,
                settings.core_pack_processing_timeout_ms,
            ),
            _handle,
        )

    def to_device_actor(self, device_id: str, action: Callable[[], object]) -> None:
        """DefaultTransportService.sendToDeviceActor: onto the core partition of the device."""
        self.core.put(ActorMsg(device_id, action))

    def to_transport(self, action: Callable[[], object]) -> None:
        """DefaultTbCoreToTransportService.process: onto the transport node's notifications topic."""
        self.notifications.put(ActorMsg(NULL_UUID, action))

    def start(self) -> None:
        self.core.start()
        self.notifications.start()

    async def stop(self) -> None:
        await self.core.stop()
        await self.notifications.stop()

    @property
    def idle(self) -> bool:
        return self.core.idle and self.notifications.idle

    def view(self) -> list[dict[str, Any]]:
        return [self.core.view(), self.notifications.view()]
