"""The giftwheel chain kept in ThingsBoard (cloud/tbadmin/chain_sync.py) against the emulator's admin REST
API, which saves chains as the selected ThingsBoard version does: recognised as ours although 4.4
rewrites its REST node on every save, updated in place (node ids kept) when it really changed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from cloud.tbadmin.chain_sync import MARKER, ensure_rule_chain
from cloud.tbadmin.client import JsonObject, ThingsBoardAdmin, ThingsBoardError, entity_id
from cloud.tbadmin.provision import Artefacts
from devstack.tb_emulator.harness import EmulatorProcess
from devstack.tb_emulator.rest_admin import TENANT_PASSWORD, TENANT_USER
from devstack.tb_emulator.versions import TbVersion
from tests.ops.target_root import REPO

pytestmark = pytest.mark.slow

ARTEFACTS = Artefacts.load(REPO / "deploy/thingsboard")
URL = "https://api.test.invalid/v1/feedback/thingsboard"
SECRET = "feedback-secret-for-the-test-0123456789"
REST = "org.thingsboard.rule.engine.rest.TbRestApiCallNode"


@pytest.fixture(scope="module", params=list(TbVersion), ids=lambda v: f"tb{v.value}")
def tb_version(request: pytest.FixtureRequest) -> TbVersion:
    version: TbVersion = request.param
    return version


@pytest.fixture(scope="module")
def emulator(tb_version: TbVersion) -> Iterator[EmulatorProcess]:
    with EmulatorProcess([], extra_args=("--thingsboard-version", tb_version.value)) as emu:
        yield emu


@pytest.fixture
def admin(emulator: EmulatorProcess) -> Iterator[ThingsBoardAdmin]:
    with ThingsBoardAdmin(emulator.base_url) as client:
        client.login(TENANT_USER, TENANT_PASSWORD)
        yield client


def desired(name: str, url: str = URL) -> JsonObject:
    chain = ARTEFACTS.chain_for(url, SECRET)
    chain["ruleChain"]["name"] = name  # one chain per test on the module's emulator
    return chain


def stored(admin: ThingsBoardAdmin, chain: JsonObject) -> JsonObject:
    return admin.rule_chain_metadata(entity_id(chain))


def node_ids(metadata: JsonObject) -> dict[str, Any]:
    return {n["name"]: n["id"]["id"] for n in metadata["nodes"]}


def test_a_second_run_changes_nothing_although_the_server_rewrote_the_chain(
    tb_version: TbVersion, admin: ThingsBoardAdmin
) -> None:
    chain, action = ensure_rule_chain(admin, desired("second-run"))
    assert action == "created"
    metadata = stored(admin, chain)
    (rest,) = [n for n in metadata["nodes"] if n["type"] == REST]
    sent = next(n for n in desired("second-run")["metadata"]["nodes"] if n["type"] == REST)
    if tb_version is TbVersion.V4_4:  # what defeated the old shape comparison
        assert (sent["configurationVersion"], rest["configurationVersion"]) == (3, 4)
        assert rest["configuration"] != sent["configuration"]
    else:
        assert rest["configuration"] == sent["configuration"]
    version = chain["version"]
    again, action = ensure_rule_chain(admin, desired("second-run"))
    assert action == "unchanged"
    assert again["version"] == version  # nothing was written
    assert set(again["additionalInfo"][MARKER]) == {"sent", "stored"}
    assert (
        again["additionalInfo"]["description"]
        == ARTEFACTS.chain["ruleChain"]["additionalInfo"]["description"]
    )


def test_a_real_change_updates_the_nodes_in_place(admin: ThingsBoardAdmin) -> None:
    chain, _ = ensure_rule_chain(admin, desired("in-place"))
    before = stored(admin, chain)
    chain, action = ensure_rule_chain(admin, desired("in-place", url="https://moved.test.invalid/feedback"))
    assert action == "updated"
    after = stored(admin, chain)
    assert node_ids(after) == node_ids(before)  # no node deleted and recreated
    (rest,) = [n for n in after["nodes"] if n["type"] == REST]
    assert rest["configuration"]["restEndpointUrlPattern"] == "https://moved.test.invalid/feedback"
    assert after["firstNodeIndex"] == before["firstNodeIndex"]
    assert (
        admin.rule_chain(entity_id(chain))["firstRuleNodeId"]["id"] == node_ids(after)["Message Type Switch"]
    )
    assert (
        ensure_rule_chain(admin, desired("in-place", url="https://moved.test.invalid/feedback"))[1]
        == "unchanged"
    )


def test_a_hand_edit_is_drift_and_is_put_back_in_place(admin: ThingsBoardAdmin) -> None:
    chain, _ = ensure_rule_chain(admin, desired("drift"))
    metadata = stored(admin, chain)
    for node in metadata["nodes"]:
        if node["name"] == "RPC to motor":
            node["configuration"]["timeoutInSeconds"] = 300
    admin.save_rule_chain_metadata(metadata)
    chain, action = ensure_rule_chain(admin, desired("drift"))
    assert action == "updated"
    repaired = stored(admin, chain)
    assert node_ids(repaired) == node_ids(metadata)
    rpc = next(n for n in repaired["nodes"] if n["name"] == "RPC to motor")
    assert rpc["configuration"]["timeoutInSeconds"] == 20


def test_a_chain_we_did_not_mark_is_taken_over_once(admin: ThingsBoardAdmin) -> None:
    """A chain saved by hand (or by an older giftwheel) carries no fingerprints: one in-place update."""
    export = desired("unmarked")
    chain = admin.save_rule_chain({"name": "unmarked", "type": "CORE"})
    admin.save_rule_chain_metadata(
        {**export["metadata"], "ruleChainId": chain["id"], "version": chain["version"]}
    )
    ids = node_ids(stored(admin, chain))
    chain, action = ensure_rule_chain(admin, export)
    assert action == "updated"
    assert node_ids(stored(admin, chain)) == ids
    assert ensure_rule_chain(admin, export)[1] == "unchanged"


def test_an_edit_between_our_read_and_our_write_is_refused(admin: ThingsBoardAdmin) -> None:
    chain, _ = ensure_rule_chain(admin, desired("locked"))
    metadata = stored(admin, chain)
    admin.save_rule_chain_metadata(metadata)  # someone saves meanwhile
    with pytest.raises(ThingsBoardError) as refused:
        admin.save_rule_chain_metadata(metadata)  # our write, with the version we read
    assert refused.value.status == 409
    assert "Rule chain was already changed by someone else" in str(refused.value)
