"""The artefacts in deploy/thingsboard/ agree with each other and with what the emulator runs."""

from __future__ import annotations

import json

from devstack.tb_emulator.devices import load_devices_file
from devstack.tb_emulator.harness import SHIPPED_DEVICES
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
    assert devices["dispatcher"].token
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
