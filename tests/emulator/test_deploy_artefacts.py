"""The artefacts in deploy/thingsboard/ agree with each other and with what the emulator runs."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from cloud.worker.rpc_timeline import RULE_ENGINE_GRACE_S, RpcTimeline
from devstack.stack import StackOptions
from devstack.tb_emulator.devices import load_devices_file
from devstack.tb_emulator.harness import SHIPPED_DEVICES
from devstack.tb_emulator.hub import HubSettings
from devstack.tb_emulator.nodes import bind
from devstack.tb_emulator.rule_engine import build_engine, load_chain_file
from devstack.tb_emulator.server import SHIPPED_CHAIN
from edge.settings import ThingsBoardSettings
from giftwheel.contracts.motor import MOTOR_PROFILE

PROFILES_DIR = SHIPPED_CHAIN.parent / "device_profiles"


def test_every_device_type_has_a_profile_and_every_profile_is_used() -> None:
    profiles = {json.loads(p.read_text())["name"]: p for p in PROFILES_DIR.glob("*.json")}
    devices = load_devices_file(SHIPPED_DEVICES).devices
    assert {d.type for d in devices} == set(profiles)
    for name, path in profiles.items():
        profile = json.loads(path.read_text())
        assert path.stem == name
        assert (profile["type"], profile["provisionType"]) == ("DEFAULT", "DISABLED")
        assert profile["profileData"]["transportConfiguration"] == {"type": "DEFAULT"}


def test_shipped_devices_are_what_the_chain_and_docs_expect() -> None:
    devices = {d.name: d for d in load_devices_file(SHIPPED_DEVICES).devices}
    gateways = [d for d in devices.values() if d.gateway]
    assert len(gateways) == 1
    assert gateways[0].overwrite_activity_time
    # one dispatcher device per local worker (ThingsBoard keeps one session per device)
    dispatchers = [d for d in devices.values() if d.type == "dispatcher"]
    assert len(dispatchers) >= StackOptions().workers
    assert all(d.token for d in dispatchers)
    motors = [d for d in devices.values() if d.type == MOTOR_PROFILE]
    assert motors
    assert all(m.token is None for m in motors)  # motors speak through the gateway only
    # the webhook branch of the chain routes on this very profile name
    chain = load_chain_file(SHIPPED_CHAIN)
    switch = next(
        i for i, n in enumerate(chain["metadata"]["nodes"]) if n["type"].endswith("TbDeviceTypeSwitchNode")
    )
    routes = {c["type"] for c in chain["metadata"]["connections"] if c["fromIndex"] == switch}
    assert routes == {MOTOR_PROFILE}
    # ... which is the type the edge announces for each motor, so a motor ThingsBoard first meets
    # through the gateway is created on that profile (tests/emulator/test_profiles.py)
    assert ThingsBoardSettings(access_token="t").motor_profile == MOTOR_PROFILE


def test_shipped_chain_builds() -> None:
    engine = build_engine(load_chain_file(SHIPPED_CHAIN), bind(None))  # type: ignore[arg-type]
    assert engine.name == "giftwheel"


def test_the_worker_follows_the_shipped_chains_rpc_timeline() -> None:
    """The worker's RPC numbers are the shipped chain's and a stock ThingsBoard's (docs/thingsboard.md
    s.1 "One RPC timeline"): it resends only once ThingsBoard's RPC has ended."""
    chain = load_chain_file(SHIPPED_CHAIN)
    nodes = chain["metadata"]["nodes"]
    to_motor = next(i for i, n in enumerate(nodes) if n["type"].endswith("TbChangeOriginatorNode"))
    (rpc_to_motor,) = (
        c["toIndex"]
        for c in chain["metadata"]["connections"]
        if c["fromIndex"] == to_motor and c["type"] == "Success"
    )
    assert nodes[rpc_to_motor]["type"].endswith("TbSendRPCRequestNode")
    timeline = RpcTimeline()
    assert nodes[rpc_to_motor]["configuration"]["timeoutInSeconds"] == timeline.chain_timeout_s
    # CLIENT_SIDE_RPC_TIMEOUT's default (application/src/main/resources/thingsboard.yml), the emulator's too
    assert timeline.client_timeout_s == HubSettings().client_rpc_timeout_s == 60
    assert timeline.client_timeout_s > timeline.chain_timeout_s + RULE_ENGINE_GRACE_S + timeline.margin_s
    assert timeline.attempt_lifetime_s == 82
    with pytest.raises(ValidationError, match="transport gives up before the chain"):
        RpcTimeline(chain_timeout_s=60)  # a chain that holds the RPC as long as the transport waits
