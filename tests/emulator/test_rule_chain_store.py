"""Rule chains saved as ThingsBoard's admin API saves them (rule_chain_store.py): versions, nodes kept by
id, the upgrade of the selected version, what a save refuses, all or nothing."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from devstack.tb_emulator.rule_chain_store import AdminError, RuleChainStore
from devstack.tb_emulator.server import SHIPPED_CHAIN
from devstack.tb_emulator.versions import TbVersion

NOW_MS = 1_700_000_000_000
TENANT = "13814000-1dd2-11b2-8080-808080808080"
SHIPPED: dict[str, Any] = json.loads(SHIPPED_CHAIN.read_text())


def saved_chain(version: TbVersion = TbVersion.V4_3) -> tuple[RuleChainStore, dict[str, Any], dict[str, Any]]:
    store = RuleChainStore(version, TENANT)
    chain = store.save_chain({"name": "giftwheel", "type": "CORE"}, NOW_MS)
    body = {**copy.deepcopy(SHIPPED["metadata"]), "ruleChainId": chain["id"], "version": chain["version"]}
    return store, chain, store.save_metadata(body, NOW_MS)


def refused(store: RuleChainStore, body: dict[str, Any]) -> AdminError:
    with pytest.raises(AdminError) as error:
        store.save_metadata(body, NOW_MS + 1)
    return error.value


def test_every_save_moves_the_version_and_a_stale_one_is_a_conflict() -> None:
    store, chain, metadata = saved_chain()
    assert (chain["version"], metadata["version"]) == (1, 2)
    assert store.chain(chain["id"]["id"])["version"] == 2
    error = refused(store, {**metadata, "version": 1})
    assert (error.status, error.code, error.message) == (
        409,
        35,
        "Rule chain was already changed by someone else",
    )
    with pytest.raises(AdminError, match="already changed"):
        store.save_chain({**store.chain(chain["id"]["id"]), "version": 1}, NOW_MS)


def test_nodes_sent_with_ids_are_updated_in_place_the_rest_created_or_deleted() -> None:
    store, _, metadata = saved_chain()
    ids = [n["id"]["id"] for n in metadata["nodes"]]
    last = len(ids) - 1  # "RPC from REST/UI": not sent again, so deleted
    new = {
        "type": metadata["nodes"][last]["type"],
        "name": "Another RPC",
        "configuration": {"timeoutInSeconds": 5},
    }
    # the new node goes first in the request: every kept node's index moves up by one
    wiring = [
        {**c, "fromIndex": c["fromIndex"] + 1, "toIndex": c["toIndex"] + 1}
        for c in metadata["connections"]
        if last not in (c["fromIndex"], c["toIndex"])
    ]
    body = {**metadata, "nodes": [new, *metadata["nodes"][:last]], "connections": wiring, "firstNodeIndex": 1}
    after = store.save_metadata(body, NOW_MS + 1)
    # loaded back in creation order: the kept nodes first (older), the new one last
    assert [n["id"]["id"] for n in after["nodes"][:last]] == ids[:last]
    assert after["nodes"][last]["name"] == "Another RPC"
    assert after["nodes"][last]["id"]["id"] not in ids
    assert after["firstNodeIndex"] == 0
    kept = [c for c in metadata["connections"] if last not in (c["fromIndex"], c["toIndex"])]
    assert after["connections"] == kept  # re-indexed back, in (fromIndex, toIndex, type) order


def test_the_selected_version_upgrades_on_save() -> None:
    for version, expected in ((TbVersion.V4_3, 3), (TbVersion.V4_4, 4)):
        _, _, metadata = saved_chain(version)
        (rest,) = [n for n in metadata["nodes"] if n["type"].endswith("TbRestApiCallNode")]
        assert rest["configurationVersion"] == expected
        assert ("useSimpleClientHttpFactory" in rest["configuration"]) is (version is TbVersion.V4_3)
        assert all(n["singletonMode"] is False and "debugMode" not in n for n in metadata["nodes"])


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        (lambda b: b["connections"].append({"fromIndex": 2, "toIndex": 2, "type": "x"}), 400, "to yourself"),
        (
            lambda b: b["connections"].append({"fromIndex": 4, "toIndex": 3, "type": "Failure"}),
            400,
            "circling",
        ),
        (lambda b: b["connections"].append({"fromIndex": 0, "toIndex": 42, "type": "x"}), 500, "Index 42"),
        (lambda b: b["nodes"][4].update(id={"entityType": "RULE_NODE", "id": "nope"}), 500, "not a node"),
        (lambda b: b["nodes"][1].update(configuration={"defaultTTL": 0}), 400, "processingSettings must not"),
        (lambda b: b["nodes"][1].update(name="n" * 256), 400, "name length"),
    ],
)
def test_a_refused_save_changes_nothing(change: Any, status: int, message: str) -> None:
    store, chain, metadata = saved_chain()
    body = copy.deepcopy(metadata)
    change(body)
    error = refused(store, body)
    assert error.status == status
    assert message in error.message
    assert store.metadata(chain["id"]["id"]) == metadata


def test_a_configuration_that_does_not_bind_is_saved_as_thingsboard_saves_it() -> None:
    store, _, metadata = saved_chain()
    metadata["nodes"][4]["configuration"]["timeout"] = 5  # the node would fail at start, not the save
    assert store.save_metadata(metadata, NOW_MS + 1)["nodes"][4]["configuration"]["timeout"] == 5


def test_one_root_chain_per_tenant() -> None:
    store = RuleChainStore(TbVersion.V4_3, TENANT)
    store.save_chain({"name": "Root Rule Chain", "root": True}, NOW_MS)
    with pytest.raises(AdminError, match="Another root rule chain is present"):
        store.save_chain({"name": "second root", "root": True}, NOW_MS)


def test_notes_are_kept_from_4_4_on() -> None:
    notes = [{"id": "n1", "x": 0, "y": 0, "content": "why"}]
    for version, kept in ((TbVersion.V4_3, False), (TbVersion.V4_4, True)):
        store, _, metadata = saved_chain(version)
        after = store.save_metadata({**metadata, "notes": notes}, NOW_MS + 1)
        assert ("notes" in after) is kept
