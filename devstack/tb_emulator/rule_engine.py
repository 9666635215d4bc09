"""A rule chain in ThingsBoard's export format, executed: messages, relations, routing.

The chain file is what ThingsBoard exports and imports (``ruleChain`` + ``metadata`` with ``nodes``,
``connections``, ``firstNodeIndex``). Each node's ``type`` must be in ``nodes.NODE_TYPES``; anything
else is a startup error naming the node, so the shipped chain cannot drift from what is tested.
Relation names match case-insensitively, as in RuleChainActorMessageProcessor; a message whose
relation has no connection ends there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import orjson
import structlog

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
    """A rule-engine message: type, originator device, data (JSON text) and string metadata."""

    __slots__ = ("_parsed", "data", "metadata", "originator", "type")

    def __init__(
        self, type_: str, originator: Device, data: str, metadata: dict[str, str], parsed: Any = None
    ) -> None:
        self.type = type_
        self.originator = originator
        self.data = data
        self.metadata = metadata
        self._parsed = parsed

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
        )


Emit = Callable[[TbMsg, str], None]


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


@dataclass(slots=True)
class _Submission:
    """One message's pass through the chain, kept so a failed pass can be run again."""

    original: TbMsg
    attempt: int
    retry_scheduled: bool = False


class RuleEngine:
    """Runs messages through the chain. ``retries`` > 0 is the rule-engine queue's processing
    strategy RETRY_FAILED_AND_TIMED_OUT: a message whose pass ends in an unconnected Failure is
    run through the whole chain again after ``retry_pause_s``, up to ``retries`` times; 0 is
    SKIP_ALL_FAILURES (a failed message is dropped)."""

    def __init__(self, slots: list[NodeSlot], first: int, name: str, *, root: bool = False) -> None:
        self.slots = slots
        self.first = first
        self.name = name
        self.root = root  # ruleChain.root: where messages of profiles without a default rule chain go
        self.processed = 0
        self.failures = 0
        self.retried = 0
        self.retries = 0
        self.retry_pause_s = 3.0

    def submit(self, msg: TbMsg, attempt: int = 0) -> None:
        self.processed += 1
        self._run(self.first, msg, _Submission(msg.copy() if self.retries else msg, attempt))

    def _failed(self, submission: _Submission) -> None:
        self.failures += 1
        if submission.retry_scheduled or submission.attempt >= self.retries:
            return
        submission.retry_scheduled = True  # a pass that fails on several branches is retried once
        self.retried += 1
        asyncio.get_running_loop().call_later(
            self.retry_pause_s, self.submit, submission.original, submission.attempt + 1
        )

    def _run(self, index: int, msg: TbMsg, submission: _Submission) -> None:
        slot = self.slots[index]

        def emit(out: TbMsg, relation: str) -> None:
            targets = slot.routes.get(relation.lower())
            if not targets:
                if relation == FAILURE:
                    log.debug("rule node failure", node=slot.name, msg_type=out.type)
                    self._failed(submission)
                return
            if len(targets) == 1:
                self._run(targets[0], out, submission)
                return
            for target in targets:
                self._run(target, out.copy(), submission)

        try:
            slot.node.on_msg(msg, emit)
        except Exception as exc:  # a node bug must not kill the transport; ThingsBoard tells Failure
            log.exception("rule node raised", node=slot.name, error=str(exc))
            emit(msg, FAILURE)


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
            node = node_types[spec["type"]](spec.get("configuration") or {})
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainError(
                f"rule node {spec.get('name')!r} ({spec['type']}): bad configuration: {exc}"
            ) from exc
        slots.append(NodeSlot(index, spec.get("name", ""), spec["type"], node))
    for conn in connections:
        src, dst, relation = conn["fromIndex"], conn["toIndex"], conn["type"]
        if not (0 <= src < len(slots) and 0 <= dst < len(slots)):
            raise ChainError(f"connection {conn} points outside the {len(slots)} nodes")
        slots[src].routes.setdefault(relation.lower(), []).append(dst)
    if not isinstance(first, int) or not 0 <= first < len(slots):
        raise ChainError(f"firstNodeIndex {first!r} is not a node index")
    return RuleEngine(slots, first, name, root=chain["ruleChain"].get("root") is True)
