"""A rule chain in ThingsBoard's export format, executed: messages, relations, routing.

The chain file is what ThingsBoard exports and imports (``ruleChain`` + ``metadata`` with ``nodes``,
``connections``, ``firstNodeIndex``). Each node's ``type`` must be in ``nodes.NODE_TYPES``; anything
else is a startup error naming the node, so the shipped chain cannot drift from what is tested.
Relation names match case-insensitively, as in RuleChainActorMessageProcessor; a message whose
relation has no connection ends there.

Messages reach a chain through a rule-engine queue (queues.py), which learns of each message's end
through its callback, as RuleChainActorMessageProcessor tells it (thingsboard/thingsboard
application/src/main/java/org/thingsboard/server/actors/ruleChain/RuleChainActorMessageProcessor.java
@dfe65d5): success when a relation has no connection, failure when that relation is Failure; a
relation with several connections puts a copy per target on the queue and succeeds once they are
there; a node that answers later (the REST API call node) keeps the message pending until it does,
while the RPC call request node acks at once and puts the device's answer on the queue as a new
message (TbSendRPCRequestNode). A message whose pack gave up on it stops at the next node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import structlog

from devstack.tb_emulator import gson

if TYPE_CHECKING:
    from devstack.tb_emulator.devices import Device

log = structlog.get_logger("tb_emulator.rule_engine")


class MsgType(StrEnum):
    """org.thingsboard.server.common.data.msg.TbMsgType (the ones the emulator produces)."""

    POST_TELEMETRY_REQUEST = "POST_TELEMETRY_REQUEST"
    POST_ATTRIBUTES_REQUEST = "POST_ATTRIBUTES_REQUEST"
    TO_SERVER_RPC_REQUEST = "TO_SERVER_RPC_REQUEST"
    RPC_CALL_FROM_SERVER_TO_DEVICE = "RPC_CALL_FROM_SERVER_TO_DEVICE"
    RPC_QUEUED = "RPC_QUEUED"
    RPC_SENT = "RPC_SENT"
    RPC_DELIVERED = "RPC_DELIVERED"
    RPC_SUCCESSFUL = "RPC_SUCCESSFUL"
    RPC_TIMEOUT = "RPC_TIMEOUT"
    RPC_EXPIRED = "RPC_EXPIRED"
    RPC_FAILED = "RPC_FAILED"
    RPC_DELETED = "RPC_DELETED"
    REST_API_REQUEST = "REST_API_REQUEST"
    ENTITY_CREATED = "ENTITY_CREATED"


# TbMsgType.getRuleNodeConnection(): the relation a message type switch emits.
MSG_TYPE_RELATIONS: dict[str, str] = {
    MsgType.POST_TELEMETRY_REQUEST: "Post telemetry",
    MsgType.POST_ATTRIBUTES_REQUEST: "Post attributes",
    MsgType.TO_SERVER_RPC_REQUEST: "RPC Request from Device",
    MsgType.RPC_CALL_FROM_SERVER_TO_DEVICE: "RPC Request to Device",
    MsgType.RPC_QUEUED: "RPC Queued",
    MsgType.RPC_SENT: "RPC Sent",
    MsgType.RPC_DELIVERED: "RPC Delivered",
    MsgType.RPC_SUCCESSFUL: "RPC Successful",
    MsgType.RPC_TIMEOUT: "RPC Timeout",
    MsgType.RPC_EXPIRED: "RPC Expired",
    MsgType.RPC_FAILED: "RPC Failed",
    MsgType.RPC_DELETED: "RPC Deleted",
    MsgType.REST_API_REQUEST: "REST API request",
    MsgType.ENTITY_CREATED: "Entity Created",
}
OTHER_RELATION = "Other"
SUCCESS = "Success"
FAILURE = "Failure"


class TbMsg:
    """A rule-engine message: type, originator device, data (JSON text) and string metadata.

    ``parsed`` is the data as a JSON tree, ``gson_tree`` as Gson reads it (:meth:`gson`), when the
    message's maker has them; both are parsed on demand otherwise."""

    __slots__ = ("_gson", "_parsed", "data", "metadata", "originator", "type")

    def __init__(
        self,
        type_: str,
        originator: Device,
        data: str,
        metadata: dict[str, str],
        parsed: Any = None,
        *,
        gson_tree: Any = None,
    ) -> None:
        self.type = type_
        self.originator = originator
        self.data = data
        self.metadata = metadata
        self._parsed = parsed
        self._gson = gson_tree

    def gson(self) -> Any:
        """The data as ThingsBoard's telemetry nodes read it, ``JsonParser.parseString(msg.getData())``
        (gson.parse: number literals kept); malformed data raises JsonSyntaxException."""
        if self._gson is None:
            self._gson = gson.parse(self.data.encode("utf-8", "replace"))
        return self._gson

    def json(self) -> Any:
        """The data parsed as JSON (None if it is not JSON)."""
        if self._parsed is None:
            try:
                self._parsed = orjson.loads(self.data)
            except orjson.JSONDecodeError:
                return None
        return self._parsed

    def copy(self, **changes: Any) -> TbMsg:
        data = changes.get("data", self.data)
        return TbMsg(
            changes.get("type_", self.type),
            changes.get("originator", self.originator),
            data,
            dict(changes.get("metadata", self.metadata)),
            changes.get("parsed", self._parsed if data is self.data else None),
            gson_tree=self._gson if data is self.data else None,
        )


class Emit(Protocol):
    """How a node hands on its result: ThingsBoard's TbContext, reduced (DefaultTbContext)."""

    def __call__(self, msg: TbMsg, relation: str) -> None:
        """tellNext: on along the node's connections of that relation, as part of the same pass."""

    def enqueue(self, msg: TbMsg, relation: str, failure_message: str | None = None) -> None:
        """enqueueForTellNext / enqueueForTellFailure: a new message on the queue, routed from this node."""

    def ack(self, msg: TbMsg) -> None:
        """ack: the message's pass ends here, successfully."""

    @property
    def valid(self) -> bool:
        """TbMsg.isValid: false once the message's pack gave up on it (RuleNodeActor then skips it)."""


class Node(Protocol):
    def on_msg(self, msg: TbMsg, emit: Emit) -> None: ...


class ChainError(ValueError):
    """The rule chain file cannot be executed as ThingsBoard would."""


@dataclass(slots=True)
class NodeSlot:
    index: int
    name: str
    type: str
    node: Node
    # relation (lower case) -> target node indexes
    routes: dict[str, list[int]] = field(default_factory=dict)


class MsgCallback(Protocol):
    """TbMsgCallback: how the queue that delivered a message learns of its end (queues.PackCallback)."""

    def on_success(self) -> None: ...
    def on_failure(self, error: str) -> None: ...
    @property
    def valid(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class QueueMsg:
    """A message on a rule-engine queue (ThingsBoard's ToRuleEngineMsg) and where its pass starts:
    at ``node`` (None: the chain's first node) or, with ``relation``, at the connections that leave
    ``node`` by that relation (a result a node put on the queue)."""

    msg: TbMsg
    chain: RuleEngine
    queue_name: str | None  # TbMsg.queueName: the originator profile's defaultQueueName; None is Main
    node: int | None = None
    relation: str | None = None
    failure_message: str | None = None

    @property
    def originator_id(self) -> str:
        return self.msg.originator.id

    def for_reprocessing(self) -> QueueMsg:
        """AbstractTbRuleEngineSubmitStrategy.update: a failure report submitted again loses its
        relation and failure message, so the node that reported it runs again."""
        if self.failure_message:
            return replace(self, relation=None, failure_message=None)
        return self


def process(item: QueueMsg, callback: MsgCallback) -> None:
    """What a queue's consumer hands each message to: the chain the message is addressed to."""
    item.chain.process(item, callback)


class _Pass:
    """One message's way through the chain: the queue it came from and that queue's callback."""

    __slots__ = ("callback", "queue_name")

    def __init__(self, queue_name: str | None, callback: MsgCallback) -> None:
        self.queue_name = queue_name
        self.callback = callback


class _NodeContext:
    """The Emit a node gets for one message (DefaultTbContext of that node)."""

    __slots__ = ("_engine", "_index", "_pass")

    def __init__(self, engine: RuleEngine, index: int, pass_: _Pass) -> None:
        self._engine = engine
        self._index = index
        self._pass = pass_

    def __call__(self, msg: TbMsg, relation: str) -> None:
        self._engine._route(self._index, msg, relation, self._pass)

    def enqueue(self, msg: TbMsg, relation: str, failure_message: str | None = None) -> None:
        # the new message's own pack decides its fate; the source's validity is not asked
        engine = self._engine
        engine.put(QueueMsg(msg, engine, self._pass.queue_name, self._index, relation, failure_message))

    def ack(self, msg: TbMsg) -> None:
        self._pass.callback.on_success()

    @property
    def valid(self) -> bool:
        return self._pass.callback.valid


class RuleEngine:
    """Runs queue messages through the chain and tells each message's queue when it is done."""

    def __init__(self, slots: list[NodeSlot], first: int, name: str, *, root: bool = False) -> None:
        self.slots = slots
        self.first = first
        self.name = name
        self.root = root  # ruleChain.root: where messages of profiles without a default rule chain go
        self.processed = 0  # messages taken from a queue
        self.failures = 0  # passes that ended on a Failure relation with no connection
        # Where copies and enqueued results go (TbClusterService.pushMsgToRuleEngine): the hub's queues
        self.enqueue: Callable[[QueueMsg], None] | None = None

    def put(self, item: QueueMsg) -> None:
        assert self.enqueue is not None, "the chain is not attached to rule-engine queues"
        self.enqueue(item)

    def process(self, item: QueueMsg, callback: MsgCallback) -> None:
        """onQueueToRuleEngineMsg: a message polled from a queue."""
        if not callback.valid:
            return
        self.processed += 1
        pass_ = _Pass(item.queue_name, callback)
        if item.relation is None:
            self._run(self.first if item.node is None else item.node, item.msg, pass_)
        else:
            assert item.node is not None
            self._route(item.node, item.msg, item.relation, pass_)

    def _run(self, index: int, msg: TbMsg, pass_: _Pass) -> None:
        if not pass_.callback.valid:  # RuleNodeActor: "no longer valid", skipped
            return
        slot = self.slots[index]
        ctx = _NodeContext(self, index, pass_)
        try:
            slot.node.on_msg(msg, ctx)
        except Exception as exc:  # a node bug must not kill the transport; ThingsBoard tells Failure
            log.exception("rule node raised", node=slot.name, error=str(exc))
            ctx(msg, FAILURE)

    def _route(self, index: int, msg: TbMsg, relation: str, pass_: _Pass) -> None:
        """onTellNext: the connections of ``relation`` leaving node ``index``."""
        if not pass_.callback.valid:
            return
        slot = self.slots[index]
        targets = slot.routes.get(relation.lower())
        if not targets:
            if relation == FAILURE:
                self.failures += 1
                log.debug("rule node failure", node=slot.name, msg_type=msg.type)
                pass_.callback.on_failure(f"rule node {slot.name!r} of chain {self.name!r}: Failure")
            else:
                pass_.callback.on_success()
            return
        if len(targets) == 1:
            self._run(targets[0], msg, pass_)
            return
        # MultipleTbQueueTbMsgCallbackWrapper: a copy per target on the queue, then this message is done
        for target in targets:
            self.put(QueueMsg(msg.copy(), self, pass_.queue_name, target))
        pass_.callback.on_success()


# A node from its JSON in the chain (name, type, configurationVersion, configuration): nodes.bind
NodeFactory = Callable[[dict[str, Any]], Node]


def load_chain_file(path: Path) -> dict[str, Any]:
    try:
        chain: dict[str, Any] = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        raise ChainError(f"cannot read rule chain {path}: {exc}") from exc
    return chain


def build_engine(chain: dict[str, Any], node_types: dict[str, NodeFactory]) -> RuleEngine:
    try:
        meta = chain["metadata"]
        nodes = meta["nodes"]
        connections = meta["connections"] or []
        first = meta["firstNodeIndex"]
        name = chain["ruleChain"]["name"]
    except (KeyError, TypeError) as exc:
        raise ChainError(f"not a ThingsBoard rule chain export: missing {exc}") from None
    slots: list[NodeSlot] = []
    unknown = [f"{n.get('name')!r} ({n.get('type')})" for n in nodes if n.get("type") not in node_types]
    if unknown:
        raise ChainError(
            f"rule chain {name!r} uses node types the emulator does not implement: {', '.join(unknown)}"
        )
    for index, spec in enumerate(nodes):
        try:
            node = node_types[spec["type"]](spec)
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainError(f"rule node {spec.get('name')!r} ({spec['type']}): {exc}") from exc
        slots.append(NodeSlot(index, spec.get("name", ""), spec["type"], node))
    for conn in connections:
        src, dst, relation = conn["fromIndex"], conn["toIndex"], conn["type"]
        if not (0 <= src < len(slots) and 0 <= dst < len(slots)):
            raise ChainError(f"connection {conn} points outside the {len(slots)} nodes")
        slots[src].routes.setdefault(relation.lower(), []).append(dst)
    if not isinstance(first, int) or not 0 <= first < len(slots):
        raise ChainError(f"firstNodeIndex {first!r} is not a node index")
    return RuleEngine(slots, first, name, root=chain["ruleChain"].get("root") is True)
