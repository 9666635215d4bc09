"""Rule node configurations read as ThingsBoard reads them (node_configs.py, jackson.py): Jackson's
binding and coercions, which classes fail on unknown properties, each node's version and upgrade on
save, what a save refuses, and what the node's init refuses; per ThingsBoard version."""

from __future__ import annotations

import copy
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.processes import giftwheel_argv
from devstack.tb_emulator.jackson import JavaBindError, read
from devstack.tb_emulator.node_configs import (
    NODE_CLASSES,
    REST_NODE,
    AttributesConfiguration,
    EmptyNodeConfiguration,
    LogConfiguration,
    RestApiCallConfiguration43,
    RestApiCallConfiguration44,
    RuleNodeRefused,
    ScriptLanguage,
    SendRpcReplyConfiguration,
    SendRpcRequestConfiguration,
    save_rule_node,
)
from devstack.tb_emulator.nodes import RestApiCall, bind
from devstack.tb_emulator.rule_engine import ChainError, build_engine
from devstack.tb_emulator.server import SHIPPED_CHAIN
from devstack.tb_emulator.versions import DEFAULT_TB_VERSION, TbVersion
from tests.ops.target_root import REPO

SHIPPED: dict[str, Any] = json.loads(SHIPPED_CHAIN.read_text())
TIMESERIES = "org.thingsboard.rule.engine.telemetry.TbMsgTimeseriesNode"
ATTRIBUTES = "org.thingsboard.rule.engine.telemetry.TbMsgAttributesNode"
RPC_REQUEST = "org.thingsboard.rule.engine.rpc.TbSendRPCRequestNode"
SWITCH = "org.thingsboard.rule.engine.filter.TbMsgTypeSwitchNode"
NOW_MS = 1_700_000_000_000
CLI_TIMEOUT_S = 60


def shipped_node(node_type: str) -> dict[str, Any]:
    node: dict[str, Any] = copy.deepcopy(
        next(n for n in SHIPPED["metadata"]["nodes"] if n["type"] == node_type)
    )
    return node


def chain_with(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "ruleChain": {"name": "one node"},
        "metadata": {"firstNodeIndex": 0, "nodes": [node], "connections": []},
    }


def load(node: dict[str, Any], version: TbVersion) -> None:
    build_engine(chain_with(node), bind(None, version))  # type: ignore[arg-type]


def test_the_default_version_is_the_one_compose_deploys() -> None:
    image = yaml.safe_load((REPO / "deploy/compose.yaml").read_text())["services"]["thingsboard"]["image"]
    deployed = re.fullmatch(r"thingsboard/tb-node:\$\{TB_VERSION:-(\d+\.\d+)\.[\d.]+}", image)
    assert deployed is not None, image
    assert DEFAULT_TB_VERSION.value == deployed.group(1)


@pytest.mark.parametrize("version", list(TbVersion))
def test_the_shipped_chain_loads_on_every_version(version: TbVersion) -> None:
    engine = build_engine(SHIPPED, bind(None, version))  # type: ignore[arg-type]
    assert len(engine.slots) == len(SHIPPED["metadata"]["nodes"])


# ------------------------------------------------------------ Jackson's binding and coercions


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (20, 20),
        ("20", 20),  # a numeric String
        (" 20 ", 20),
        (20.9, 20),  # ACCEPT_FLOAT_AS_INT truncates
        (None, 0),  # null for a primitive
        ("", 0),  # empty String coerces as null
        ("null", 0),
        (3e10, 2**31 - 1),  # asInt() of a double is a Java narrowing cast
    ],
)
def test_an_int_property_takes_what_jackson_coerces(value: Any, expected: int) -> None:
    assert read(SendRpcRequestConfiguration, {"timeoutInSeconds": value}).timeout_in_seconds == expected


@pytest.mark.parametrize("value", ["20s", True, [20], {"s": 20}, 2**31, "2147483648"])
def test_an_int_property_refuses_what_jackson_refuses(value: Any) -> None:
    with pytest.raises(JavaBindError, match="timeoutInSeconds"):
        read(SendRpcRequestConfiguration, {"timeoutInSeconds": value})


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), ("TRUE", True), ("True", True), (1, True), (0, False), ("false", False), (None, False)],
)
def test_a_boolean_property_takes_what_jackson_coerces(value: Any, expected: bool) -> None:
    config = read(AttributesConfiguration, {"notifyDevice": value})
    assert config.notify_device is expected


@pytest.mark.parametrize("value", ["yes", "tRue", 1.0, []])
def test_a_boolean_property_refuses_what_jackson_refuses(value: Any) -> None:
    with pytest.raises(JavaBindError, match="notifyDevice"):
        read(AttributesConfiguration, {"notifyDevice": value})


def test_a_string_property_takes_any_scalar_as_text_but_no_structure() -> None:
    read_key = read(SendRpcReplyConfiguration, {"requestIdMetaDataAttribute": 12}).request_id_key
    assert read_key == "12"
    assert read(SendRpcReplyConfiguration, {"requestIdMetaDataAttribute": 1e20}).request_id_key == "1.0E20"
    assert read(SendRpcReplyConfiguration, {"requestIdMetaDataAttribute": ""}).request_id_key == "requestId"
    with pytest.raises(JavaBindError, match="requestIdMetaDataAttribute"):
        read(SendRpcReplyConfiguration, {"requestIdMetaDataAttribute": ["id"]})


def test_an_enum_property_takes_its_name_or_index() -> None:
    assert read(LogConfiguration, {"scriptLang": "TBEL"}).script_lang is ScriptLanguage.TBEL
    assert read(LogConfiguration, {"scriptLang": " JS "}).script_lang is ScriptLanguage.JS
    assert read(LogConfiguration, {"scriptLang": 1}).script_lang is ScriptLanguage.TBEL
    for wrong in ("tbel", "", "2"):
        with pytest.raises(JavaBindError, match="scriptLang"):
            read(LogConfiguration, {"scriptLang": wrong})


def test_unknown_properties_fail_unless_the_class_ignores_them() -> None:
    with pytest.raises(JavaBindError, match='Unrecognized field "timeout"'):
        read(SendRpcRequestConfiguration, {"timeoutInSeconds": 20, "timeout": 5})
    with pytest.raises(JavaBindError, match='Unrecognized field "x"'):
        read(EmptyNodeConfiguration, {"version": 0, "x": 1})
    with pytest.raises(JavaBindError, match='Unrecognized field "extra"'):  # records in processingSettings
        read(AttributesConfiguration, {"processingSettings": {"type": "ON_EVERY_MESSAGE", "extra": 1}})
    # @JsonIgnoreProperties(ignoreUnknown = true): the REST API call node's class at v4.3.0.1 ...
    assert read(
        RestApiCallConfiguration43, {"restEndpointUrlPattern": "http://a/", "whatever": 1}
    ).rest_endpoint_url_pattern
    # ... and not at dfe65d5
    rest_44 = NODE_CLASSES[TbVersion.V4_4][REST_NODE].configuration
    assert rest_44 is RestApiCallConfiguration44
    with pytest.raises(JavaBindError, match='Unrecognized field "whatever"'):
        read(rest_44, {"restEndpointUrlPattern": "http://a/", "whatever": 1})


# ------------------------------------------------------------ node versions and upgrades on save


@pytest.mark.parametrize("version", list(TbVersion))
def test_a_node_that_reads_no_configuration_loads_with_any(version: TbVersion) -> None:
    load({"type": SWITCH, "name": "switch", "configuration": {"anything": [1, 2]}}, version)


@pytest.mark.parametrize("version", list(TbVersion))
def test_an_unknown_property_stops_the_emulator_naming_the_node(version: TbVersion) -> None:
    node = shipped_node(RPC_REQUEST)
    node["configuration"]["timeout"] = 5
    with pytest.raises(
        ChainError, match=r"'RPC to motor' \(.*TbSendRPCRequestNode\).*Unrecognized field \"timeout\""
    ):
        load(node, version)


def test_the_rest_node_is_upgraded_from_3_to_4_on_a_4_4_save_and_left_alone_on_4_3() -> None:
    node = shipped_node(REST_NODE)
    assert node["configurationVersion"] == 3
    on_43 = save_rule_node(node, TbVersion.V4_3, NOW_MS)
    assert (on_43["configurationVersion"], on_43["configuration"]) == (3, node["configuration"])
    on_44 = save_rule_node(node, TbVersion.V4_4, NOW_MS)
    assert on_44["configurationVersion"] == 4
    # TbRestApiCallNode.upgrade case 3: requestBodyTemplate added, properties it does not know dropped
    dropped = {"useSimpleClientHttpFactory", "proxyScheme"}
    assert dropped <= set(node["configuration"])
    expected = {k: v for k, v in node["configuration"].items() if k not in dropped}
    assert on_44["configuration"] == {**expected, "requestBodyTemplate": None}
    # a node already at version 4 is stored as sent, so its unknown properties fail at start
    on_44_again = save_rule_node({**node, "configurationVersion": 4}, TbVersion.V4_4, NOW_MS)
    assert on_44_again["configuration"] == node["configuration"]
    with pytest.raises(ChainError, match='Unrecognized field "useSimpleClientHttpFactory"'):
        load({**node, "configurationVersion": 4}, TbVersion.V4_4)
    load(node, TbVersion.V4_4)  # the upgrade made it loadable


def test_a_configuration_newer_than_the_node_is_stored_as_sent_and_read_with_the_older_schema() -> None:
    node = shipped_node(REST_NODE)
    node["configurationVersion"] = 4
    node["configuration"]["requestBodyTemplate"] = '{"x": 1}'  # unknown to v4.3.0.1, which ignores it
    saved = save_rule_node(node, TbVersion.V4_3, NOW_MS)
    assert (saved["configurationVersion"], saved["configuration"]) == (4, node["configuration"])
    load(node, TbVersion.V4_3)
    v4_only = {
        k: v
        for k, v in node["configuration"].items()
        if k not in ("useSimpleClientHttpFactory", "proxyScheme")
    }
    with pytest.raises(ChainError, match="not emulated: requestBodyTemplate"):
        load({**node, "configuration": v4_only}, TbVersion.V4_4)  # 4.4 would use it: the emulator cannot


@pytest.mark.parametrize("version", list(TbVersion))
def test_timeseries_processing_settings_come_with_version_1(version: TbVersion) -> None:
    node = shipped_node(TIMESERIES)
    # a version 0 node gets processingSettings from its upgrade, whatever it said before
    old = {**node, "configurationVersion": 0, "configuration": {"defaultTTL": 0, "useServerTs": False}}
    assert save_rule_node(old, version, NOW_MS)["configuration"]["processingSettings"] == {
        "type": "ON_EVERY_MESSAGE"
    }
    dedup = {
        **old,
        "configuration": {**old["configuration"], "processingSettings": {"type": "WEBSOCKETS_ONLY"}},
    }
    assert save_rule_node(dedup, version, NOW_MS)["configuration"]["processingSettings"] == {
        "type": "ON_EVERY_MESSAGE"
    }
    skip_latest = {**old, "configuration": {"skipLatestPersistence": "true"}}
    upgraded = save_rule_node(skip_latest, version, NOW_MS)["configuration"]
    assert upgraded["processingSettings"]["type"] == "ADVANCED"
    assert upgraded["processingSettings"]["latest"] == {"type": "SKIP"}
    assert "skipLatestPersistence" not in upgraded
    with pytest.raises(ChainError, match="not emulated: processingSettings ADVANCED"):
        load(skip_latest, version)
    # a version 1 node without them: the save's @NotNull check refuses it
    missing = {**node, "configuration": {"defaultTTL": 0, "useServerTs": False}}
    with pytest.raises(
        RuleNodeRefused, match="'Save Timeseries' node configuration is invalid: processingSettings must"
    ):
        save_rule_node(missing, version, NOW_MS)
    with pytest.raises(ChainError, match="processingSettings must not be null"):
        load(missing, version)


def test_the_attributes_node_upgrade_from_version_0() -> None:
    node = {
        "type": ATTRIBUTES,
        "name": "attrs",
        "configuration": {"scope": "SHARED_SCOPE", "notifyDevice": "false"},
    }
    saved = save_rule_node(node, TbVersion.V4_3, NOW_MS)
    assert saved["configurationVersion"] == 3
    assert saved["configuration"] == {
        "scope": "SHARED_SCOPE",
        "notifyDevice": False,  # an escaped boolean is unescaped
        "sendAttributesUpdatedNotification": False,
        "updateAttributesOnlyOnValueChange": False,  # absent at version 0: false, then kept
        "processingSettings": {"type": "ON_EVERY_MESSAGE"},
    }


def test_a_save_rewrites_singleton_mode_and_debug_settings() -> None:
    node = {**shipped_node(RPC_REQUEST), "singletonMode": True, "debugMode": True}
    saved = save_rule_node(node, TbVersion.V4_3, NOW_MS)
    assert saved["singletonMode"] is False  # ComponentClusteringMode.ENABLED
    assert "debugMode" not in saved
    assert saved["debugSettings"] == {
        "failuresEnabled": True,
        "allEnabled": False,
        "allEnabledUntil": NOW_MS + 900_000,
    }


def test_node_names_are_checked_on_save() -> None:
    with pytest.raises(RuleNodeRefused, match="name length must be equal or less than 255"):
        save_rule_node({**shipped_node(RPC_REQUEST), "name": "x" * 256}, TbVersion.V4_3, NOW_MS)
    with pytest.raises(RuleNodeRefused, match="name is malformed"):
        save_rule_node({**shipped_node(RPC_REQUEST), "name": "{{ constructor }}"}, TbVersion.V4_3, NOW_MS)


# ------------------------------------------------------------ what each node's init refuses


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"originatorSource": None}, "Originator source should be specified."),
        ({"entityNamePattern": ""}, "Name pattern should be specified"),
        ({"entityType": "GADGET"}, "No enum constant org.thingsboard.server.common.data.EntityType.GADGET"),
        ({"entityType": "TENANT"}, "Unexpected entity type TENANT"),
        ({"entityType": "ASSET"}, "only originatorSource ENTITY with entityType DEVICE is emulated"),
        ({"originatorSource": "TENANT"}, "only originatorSource ENTITY with entityType DEVICE is emulated"),
    ],
)
def test_change_originator_init(change: dict[str, Any], message: str) -> None:
    node = shipped_node("org.thingsboard.rule.engine.transform.TbChangeOriginatorNode")
    node["configuration"].update(change)
    with pytest.raises(ChainError, match=re.escape(message)):
        load(node, DEFAULT_TB_VERSION)


def test_an_rpc_request_node_without_a_timeout_loads_as_in_thingsboard() -> None:
    node = shipped_node(RPC_REQUEST)
    node["configuration"] = {}  # int timeoutInSeconds = 0: its requests expire on arrival
    load(node, DEFAULT_TB_VERSION)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"maxInMemoryBufferSizeInKb": 25_001}, "exceeds the system limit"),
        ({"enableProxy": True, "proxyHost": "proxy", "proxyPort": 3128}, "not emulated: enableProxy"),
        ({"credentials": {"type": "cert.PEM"}}, "not emulated: cert.PEM credentials"),
        ({"credentials": {"type": "oauth"}}, "credentials"),
    ],
)
def test_rest_node_init(change: dict[str, Any], message: str) -> None:
    node = shipped_node(REST_NODE)
    node["configuration"].update(change)
    with pytest.raises(ChainError, match=re.escape(message)):
        load(node, DEFAULT_TB_VERSION)


def test_rest_node_query_params_are_checked_at_4_4() -> None:
    node = {**shipped_node(REST_NODE), "configurationVersion": 4}
    config = {
        k: v
        for k, v in node["configuration"].items()
        if k not in ("useSimpleClientHttpFactory", "proxyScheme")
    }
    bad = {**node, "configuration": {**config, "queryParams": [{"key": "a", "value": None}]}}
    with pytest.raises(RuleNodeRefused, match="query parameter names and values must be non-null"):
        save_rule_node(bad, TbVersion.V4_4, NOW_MS)
    load({**node, "configuration": {**config, "queryParams": []}}, TbVersion.V4_4)


def test_basic_credentials_become_an_authorization_header() -> None:
    config = read(
        NODE_CLASSES[TbVersion.V4_3][REST_NODE].configuration,
        {**shipped_node(REST_NODE)["configuration"], "credentials": {"type": "basic", "username": "u"}},
    )
    node = RestApiCall(None, config)  # type: ignore[arg-type]
    assert node.authorization == "Basic dTpudWxs"  # "u:null", as Java's string concatenation writes it


def test_the_cli_refuses_a_chain_the_selected_version_refuses(tmp_path: Path) -> None:
    chain = copy.deepcopy(SHIPPED)
    rest = next(n for n in chain["metadata"]["nodes"] if n["type"] == REST_NODE)
    rest["configurationVersion"] = 4  # as if exported from 4.4, but with a 4.3 configuration
    (tmp_path / "chain.json").write_text(json.dumps(chain))
    (tmp_path / "devices.yaml").write_text(yaml.safe_dump({"devices": [{"name": "d", "token": "t"}]}))
    files = ("--devices", str(tmp_path / "devices.yaml"), "--rule-chain", str(tmp_path / "chain.json"))
    ports = ("--mqtt-port", "0", "--http-port", "0")
    argv = giftwheel_argv("tb-emulator", *files, *ports, "--thingsboard-version", "4.4")
    result = subprocess.run(argv, capture_output=True, text=True, timeout=CLI_TIMEOUT_S, check=False)
    assert result.returncode == 2
    assert "'POST cloud feedback'" in result.stderr
    assert 'Unrecognized field "useSimpleClientHttpFactory"' in result.stderr
