"""Rule chains as ThingsBoard's admin REST API stores them: the chain entity, its nodes and relations.

Follows thingsboard/thingsboard @v4.3.0.1 and @dfe65d5: RuleChainController (save, get, metadata),
DefaultTbRuleChainService.saveRuleChainMetaData, BaseRuleChainService.saveRuleChainMetaData /
loadRuleChainMetaData, RuleChainDataValidator, JpaAbstractDao.save (versions), and for each node what
a save does to it (node_configs.save_rule_node: the upgrade of the selected ThingsBoard version).

What a metadata save does, in short: a node sent with the id of one of the chain's nodes is updated
in place (same id); a node sent without an id is created; the chain's nodes not sent are deleted; the
connections are rebuilt. The chain's ``version`` (optimistic lock) goes up by one with every save of
the chain or of its metadata, and a save naming another version is refused (409, VERSION_CONFLICT).
The answer is the metadata as loaded back: nodes ordered by creation (``createdTime``, then id),
connections by (fromIndex, toIndex, type). This store is the admin side only: the rule engine the
emulator runs is the one its chain files give it at start.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

from devstack.tb_emulator.node_configs import RuleNodeRefused, save_rule_node
from devstack.tb_emulator.versions import TbVersion

# ThingsboardErrorCode
GENERAL, BAD_REQUEST_PARAMS, ITEM_NOT_FOUND, VERSION_CONFLICT = 2, 31, 32, 35
NOT_FOUND = "Requested item wasn't found!"
CHANGED_BY_SOMEONE_ELSE = "Rule chain was already changed by someone else"  # EntityVersionMismatchException
# RuleNode's JSON properties (common/data .../rule/RuleNode.java; debugMode is read but never written)
_NODE_PROPERTIES = (
    "additionalInfo", "type", "name", "debugMode", "debugSettings", "singletonMode", "queueName",
    "configurationVersion", "configuration", "externalId",
)  # fmt: skip
_MAX_NAME = 255  # RuleChain.name: @Length


class AdminError(Exception):
    """ThingsBoard's error answer: HTTP status, message, ThingsboardErrorCode."""

    def __init__(self, status: int, message: str, code: int) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass
class _Node:
    id: str
    created_ms: int
    seq: int  # creation order, standing in for the time-based ids ThingsBoard breaks createdTime ties with
    json: dict[str, Any]  # the RuleNode's properties as saved


@dataclass
class _Chain:
    entity: dict[str, Any]  # RuleChain JSON
    nodes: dict[str, _Node] = field(default_factory=dict)
    relations: list[tuple[str, str, str]] = field(default_factory=list)  # from node id, to node id, type
    notes: list[Any] | None = None


def _entity(kind: str, entity_id: str | None) -> dict[str, str] | None:
    return None if entity_id is None else {"entityType": kind, "id": entity_id}


def _id_of(ref: Any) -> str | None:
    value = ref.get("id") if isinstance(ref, dict) else None
    return value if isinstance(value, str) else None


class RuleChainStore:
    def __init__(self, version: TbVersion, tenant_id: str) -> None:
        self.version = version
        self.tenant_id = tenant_id
        self._chains: dict[str, _Chain] = {}
        self._seq = itertools.count()

    def chains(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(chain.entity) for chain in self._chains.values()]

    def chain(self, chain_id: str) -> dict[str, Any]:
        return copy.deepcopy(self._find(chain_id).entity)

    def exists(self, chain_id: str | None) -> bool:
        return chain_id in self._chains

    def _find(self, chain_id: str | None) -> _Chain:
        chain = self._chains.get(chain_id or "")
        if chain is None:
            raise AdminError(404, NOT_FOUND, ITEM_NOT_FOUND)
        return chain

    # ------------------------------------------------------------ POST /api/ruleChain

    def save_chain(self, body: dict[str, Any], now_ms: int) -> dict[str, Any]:
        """The RuleChain as sent (firstRuleNodeId and root included: ThingsBoard takes them verbatim)."""
        name = body.get("name")
        if not isinstance(name, str) or not name.strip():  # DataValidator.validateString
            raise AdminError(400, "Rule chain name should be specified!", BAD_REQUEST_PARAMS)
        if len(name) > _MAX_NAME:
            raise AdminError(400, f"name length must be equal or less than {_MAX_NAME}", BAD_REQUEST_PARAMS)
        chain_type = body.get("type") or "CORE"
        if chain_type not in ("CORE", "EDGE"):
            raise AdminError(
                400, f"Invalid request body: unknown rule chain type {chain_type!r}", BAD_REQUEST_PARAMS
            )
        chain_id = _id_of(body.get("id"))
        existing = self._find(chain_id) if chain_id is not None else None
        self._check_version(existing, body.get("version"))
        root = body.get("root") is True
        if root and chain_type == "CORE":
            others = [c for cid, c in self._chains.items() if c.entity["root"] and cid != chain_id]
            if any(c.entity["type"] == "CORE" for c in others):
                raise AdminError(
                    400, "Another root rule chain is present in scope of current tenant!", BAD_REQUEST_PARAMS
                )
        chain_id = chain_id or str(uuid.uuid1())
        created = body.get("createdTime") or (existing.entity["createdTime"] if existing else now_ms)
        entity = {
            "id": _entity("RULE_CHAIN", chain_id),
            "createdTime": created,
            "additionalInfo": copy.deepcopy(body.get("additionalInfo")),
            "tenantId": _entity("TENANT", self.tenant_id),
            "name": name,
            "type": chain_type,
            "firstRuleNodeId": copy.deepcopy(body.get("firstRuleNodeId")),
            "root": root,
            "debugMode": body.get("debugMode") is True,
            "configuration": copy.deepcopy(body.get("configuration")),
            "externalId": copy.deepcopy(body.get("externalId")),
            # JpaAbstractDao: created at 0, +1 on every save (the create included)
            "version": (existing.entity["version"] if existing else 0) + 1,
        }
        if existing is None:
            self._chains[chain_id] = _Chain(entity)
        else:
            existing.entity = entity
        return copy.deepcopy(entity)

    @staticmethod
    def _check_version(chain: _Chain | None, version: Any) -> None:
        if chain is not None and version is not None and version != chain.entity["version"]:
            raise AdminError(409, CHANGED_BY_SOMEONE_ELSE, VERSION_CONFLICT)

    # ------------------------------------------------------------ GET/POST /api/ruleChain/.../metadata

    def metadata(self, chain_id: str) -> dict[str, Any]:
        """BaseRuleChainService.loadRuleChainMetaData."""
        chain = self._find(chain_id)
        nodes = sorted(chain.nodes.values(), key=lambda n: (n.created_ms, n.seq))
        index = {node.id: i for i, node in enumerate(nodes)}
        connections = sorted(
            (index[src], index[dst], kind)
            for src, dst, kind in chain.relations
            if src in index and dst in index
        )
        first = _id_of(chain.entity["firstRuleNodeId"])
        metadata: dict[str, Any] = {
            "ruleChainId": _entity("RULE_CHAIN", chain_id),
            "version": chain.entity["version"],
            "firstNodeIndex": index.get(first) if first is not None else None,
            "nodes": [self._node_view(chain_id, node) for node in nodes],
            "connections": [{"fromIndex": f, "toIndex": t, "type": k} for f, t, k in connections] or None,
            "ruleChainConnections": None,
        }
        if self.version is TbVersion.V4_4 and chain.notes:  # notes: @dfe65d5, @JsonInclude(NON_EMPTY)
            metadata["notes"] = copy.deepcopy(chain.notes)
        return metadata

    @staticmethod
    def _node_view(chain_id: str, node: _Node) -> dict[str, Any]:
        view = {"id": _entity("RULE_NODE", node.id), "createdTime": node.created_ms}
        view.update({k: copy.deepcopy(node.json.get(k)) for k in _NODE_PROPERTIES if k != "debugMode"})
        view["ruleChainId"] = _entity("RULE_CHAIN", chain_id)
        return view

    def save_metadata(self, body: dict[str, Any], now_ms: int) -> dict[str, Any]:
        """BaseRuleChainService.saveRuleChainMetaData, all or nothing (it runs in one transaction)."""
        chain_id = _id_of(body.get("ruleChainId"))
        if chain_id is None:
            raise AdminError(400, "Incorrect rule chain id.", BAD_REQUEST_PARAMS)
        chain = self._find(chain_id)
        self._check_version(chain, body.get("version"))
        connections = body.get("connections") or []
        if not isinstance(connections, list) or not all(isinstance(c, dict) for c in connections):
            raise AdminError(400, "Invalid request body: connections", BAD_REQUEST_PARAMS)
        _check_circles(connections)
        sent = body.get("nodes")
        if sent is not None and not (isinstance(sent, list) and all(isinstance(n, dict) for n in sent)):
            raise AdminError(400, "Invalid request body: nodes", BAD_REQUEST_PARAMS)
        saved = [self._save_node(chain, node, now_ms) for node in sent or []]
        by_index = [node.id for node in saved]
        relations: list[tuple[str, str, str]] = []
        first = _id_of(chain.entity["firstRuleNodeId"])
        if sent is not None:  # without nodes, the chain only loses its nodes
            relations = [
                (_at(by_index, c.get("fromIndex")), _at(by_index, c.get("toIndex")), str(c.get("type")))
                for c in connections
            ]
            first_index = body.get("firstNodeIndex")
            first = _at(by_index, first_index) if first_index is not None else None
        # committed: nothing above raised
        chain.entity["firstRuleNodeId"] = _entity("RULE_NODE", first)
        chain.nodes = {node.id: node for node in saved}
        chain.relations = relations
        if self.version is TbVersion.V4_4:
            chain.notes = copy.deepcopy(body.get("notes"))
        chain.entity["version"] += 1
        return self.metadata(chain_id)

    def _save_node(self, chain: _Chain, node: dict[str, Any], now_ms: int) -> _Node:
        if not isinstance(node.get("type"), str):
            raise AdminError(400, "every rule node needs a type", BAD_REQUEST_PARAMS)
        node_id = _id_of(node.get("id"))
        existing = chain.nodes.get(node_id) if node_id is not None else None
        if node_id is not None and existing is None:
            # ThingsBoard saves the other nodes, then fails loading the chain back (500); the emulator
            # refuses the whole save
            raise AdminError(500, f"rule node {node_id} is not a node of this rule chain", GENERAL)
        try:
            stored = save_rule_node(
                {k: node.get(k) for k in _NODE_PROPERTIES if k in node}, self.version, now_ms
            )
        except RuleNodeRefused as exc:
            raise AdminError(400, str(exc), BAD_REQUEST_PARAMS) from None
        if existing is not None:
            # JpaAbstractDao: the createdTime sent, or the id's time when 0 (= when it was created)
            created = node.get("createdTime") or existing.created_ms
            return _Node(existing.id, created, existing.seq, stored)
        return _Node(str(uuid.uuid1()), now_ms, next(self._seq), stored)


def _at(ids: list[str], index: Any) -> str:
    """nodes.get(index): an index outside the list is an IndexOutOfBoundsException (500)."""
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(ids):
        raise AdminError(500, f"Index {index} out of bounds for length {len(ids)}", GENERAL)
    return ids[index]


def _check_circles(connections: list[dict[str, Any]]) -> None:
    """RuleChainDataValidator.validateCircles: no connection to itself, no cycle."""
    graph: dict[Any, set[Any]] = {}
    for connection in connections:
        src, dst = connection.get("fromIndex"), connection.get("toIndex")
        if src == dst:
            raise AdminError(400, "Can't create the relation to yourself.", BAD_REQUEST_PARAMS)
        graph.setdefault(src, set()).add(dst)
    done: set[Any] = set()

    def visit(node: Any, path: set[Any]) -> None:
        for nxt in graph.get(node, ()):
            if nxt in path:
                raise AdminError(400, "Can't create circling relations in rule chain.", BAD_REQUEST_PARAMS)
            if nxt not in done:
                visit(nxt, path | {nxt})
        done.add(node)

    for start in list(graph):
        visit(start, {start})
