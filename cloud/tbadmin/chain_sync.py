"""The giftwheel rule chain in ThingsBoard: recognised as ours across server-side upgrades, updated in place.

ThingsBoard does not store a chain as it was sent. Saving the metadata upgrades each node whose
``configurationVersion`` is below its class's (on 4.4 the REST API call node goes from 3 to 4 and loses
properties it no longer knows), forces ``singletonMode`` and rewrites the debug settings
(thingsboard/thingsboard application/.../service/rule/DefaultTbRuleChainService.java
``updateRuleNodeConfiguration``, application/.../utils/TbNodeUpgradeUtils.java,
dao/.../dao/rule/BaseRuleChainService.java ``saveRuleChainMetaData`` @v4.3.0.1 and @dfe65d5). So
comparing what is stored with what we would send finds a difference on every run against such a
server. Instead, every save records two fingerprints in the chain's ``additionalInfo`` (a JSON field
ThingsBoard keeps verbatim), under ``"giftwheel"``:

- ``sent``: the chain as we sent it (the shipped JSON with this deployment's URL and secret);
- ``stored``: the chain as ThingsBoard answered the save (its own rewrite of what we sent).

A run that would send the same chain, and finds the stored chain still as ThingsBoard made it, changes
nothing. Anything else is a real change and re-sends: the shipped chain or this deployment's settings
changed, someone edited the chain (nodes, wiring, configuration, queue; node layout and debug switches
are left to the UI), or a ThingsBoard upgrade rewrote its nodes (one save, then quiet again).

A re-send updates nodes in place: each node goes with the id of the stored node of the same name and
type, which BaseRuleChainService updates rather than deletes and recreates; only nodes that are new are
created and only nodes no longer shipped are deleted. The chain's ``version`` travels with every save,
so a chain edited between our read and our write is refused (409) rather than overwritten.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Literal

from cloud.tbadmin.client import JsonObject, ThingsBoardAdmin, ThingsBoardError, entity_id

MARKER = "giftwheel"
# What the shipped JSON decides about the chain itself (ThingsBoard owns id, version, root, first node)
CHAIN_FIELDS = ("name", "type", "debugMode", "configuration")
# What a node's behaviour is, in ThingsBoard's stored form (layout and debug switches are the UI's)
STORED_NODE_FIELDS = ("type", "name", "configurationVersion", "configuration", "queueName")
Action = Literal["created", "updated", "unchanged"]


def fingerprint(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _sent_form(desired: JsonObject) -> Any:
    head = desired["ruleChain"]
    return {
        "chain": {k: head.get(k) for k in CHAIN_FIELDS} | {"additionalInfo": head.get("additionalInfo")},
        "metadata": {k: desired["metadata"].get(k) for k in ("firstNodeIndex", "nodes", "connections")},
    }


def _stored_form(metadata: JsonObject) -> Any:
    """What a stored chain does, independent of ids, node order and layout."""
    nodes = metadata.get("nodes") or []
    names = [n.get("name") for n in nodes]
    first = metadata.get("firstNodeIndex")
    return {
        "first": names[first] if isinstance(first, int) and 0 <= first < len(names) else None,
        "nodes": sorted(
            ([n.get(k) for k in STORED_NODE_FIELDS] for n in nodes),
            key=lambda n: json.dumps(n, sort_keys=True),
        ),
        "connections": sorted(
            [names[c["fromIndex"]], names[c["toIndex"]], c["type"]] for c in metadata.get("connections") or []
        ),
    }


def _marker(chain: JsonObject) -> dict[str, Any]:
    info = chain.get("additionalInfo")
    marker = info.get(MARKER) if isinstance(info, dict) else None
    return marker if isinstance(marker, dict) else {}


def _in_place(desired: JsonObject, current: JsonObject) -> list[JsonObject]:
    """The desired nodes, each carrying the id of the stored node of the same name and type."""
    stored: dict[tuple[Any, Any], JsonObject] = {}
    for node in current.get("nodes") or []:
        stored.setdefault((node.get("name"), node.get("type")), node)
    nodes = []
    for node in desired["nodes"]:
        sent = copy.deepcopy(node)
        match = stored.pop((node.get("name"), node.get("type")), None)
        if match is not None:
            sent["id"] = match["id"]
        nodes.append(sent)
    return nodes


def ensure_rule_chain(admin: ThingsBoardAdmin, desired: JsonObject) -> tuple[JsonObject, Action]:
    """Create or update the chain ``desired`` (an export: ``ruleChain`` + ``metadata``); the saved chain."""
    head = desired["ruleChain"]
    found = admin.rule_chains(head["name"])
    if len(found) > 1:
        raise ThingsBoardError(0, f"{len(found)} rule chains are named {head['name']!r}; keep one")
    sent = fingerprint(_sent_form(desired))
    metadata = {k: copy.deepcopy(desired["metadata"].get(k)) for k in ("firstNodeIndex", "connections")}
    if found:
        chain = found[0]
        current = admin.rule_chain_metadata(entity_id(chain))
        marker = _marker(chain)
        if marker.get("sent") == sent and marker.get("stored") == fingerprint(_stored_form(current)):
            return chain, "unchanged"
        action: Action = "updated"
        metadata["nodes"] = _in_place(desired["metadata"], current)
        metadata["version"] = current.get("version")  # ThingsBoard's optimistic lock
    else:
        chain = admin.save_rule_chain(
            {k: head.get(k) for k in CHAIN_FIELDS} | {"additionalInfo": head.get("additionalInfo")}
        )
        action = "created"
        metadata["nodes"] = copy.deepcopy(desired["metadata"]["nodes"])
        metadata["version"] = chain.get("version")
    metadata["ruleChainId"] = {"entityType": "RULE_CHAIN", "id": entity_id(chain)}
    saved = admin.save_rule_chain_metadata(metadata)
    # The chain as the metadata save left it (first node, version), with the shipped fields and the marker
    stored = admin.rule_chain(entity_id(chain))
    info = dict(head.get("additionalInfo") or {})
    info[MARKER] = {"sent": sent, "stored": fingerprint(_stored_form(saved))}
    stored.update({k: head.get(k) for k in CHAIN_FIELDS}, additionalInfo=info)
    return admin.save_rule_chain(stored), action
