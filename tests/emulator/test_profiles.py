"""Device profiles route messages as ThingsBoard does: a profile's default rule chain, else the root chain;
a gateway's unknown sub-device is created with the type it announces, on a profile of that name."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from devstack.tb_emulator.chains import STOCK_ROOT_CHAIN
from devstack.tb_emulator.harness import InProcessEmulator
from devstack.tb_emulator.raw_client import RawMqttClient
from devstack.tb_emulator.rule_engine import ChainError
from devstack.tb_emulator.server import SHIPPED_CHAIN
from tests.emulator.conftest import GATEWAY_TOKEN
from tests.emulator.test_rule_chain import CaptureServer

GATEWAY: dict[str, Any] = {
    "name": "pi-gateway-01",
    "token": GATEWAY_TOKEN,
    "type": "gateway",
    "gateway": True,
}
PROFILES = [{"name": n, "rule_chain": "giftwheel"} for n in ("dispatcher", "gateway", "motor")]
_TB = "org.thingsboard.rule.engine."


def small_chain(tmp_path: Path, *, root: bool, name: str) -> Path:
    """A minimal chain (telemetry saved, nothing posted), to load in combinations the emulator refuses."""
    chain = {
        "ruleChain": {"name": name, "type": "CORE", "root": root, "debugMode": False},
        "metadata": {
            "firstNodeIndex": 0,
            "nodes": [
                {
                    "type": _TB + "filter.TbMsgTypeSwitchNode",
                    "name": "Message Type Switch",
                    "configuration": {},
                },
                {
                    "type": _TB + "telemetry.TbMsgTimeseriesNode",
                    "name": "Save Timeseries",
                    "configuration": {},
                },
            ],
            "connections": [{"fromIndex": 0, "toIndex": 1, "type": "Post telemetry"}],
        },
    }
    path = tmp_path / f"{name.replace(' ', '_')}.json"
    path.write_text(json.dumps(chain))
    return path


@contextlib.asynccontextmanager
async def tenant(*devices: dict[str, Any]) -> AsyncIterator[tuple[InProcessEmulator, CaptureServer]]:
    """A tenant as `giftwheel tb provision` leaves it: ThingsBoard's stock root chain, and the giftwheel
    chain as the default of the dispatcher, gateway and motor profiles; the webhook captured."""
    capture = CaptureServer()
    async with (
        capture as url,
        InProcessEmulator(
            [GATEWAY, *devices],
            profiles=PROFILES,
            rule_chain=[STOCK_ROOT_CHAIN, SHIPPED_CHAIN],
            webhook_url=url,
        ) as tb,
    ):
        yield tb, capture


async def post_and_collect(
    tb: InProcessEmulator, capture: CaptureServer, telemetry: dict[str, Any], *, connect: dict[str, str]
) -> list[dict[str, Any]]:
    async with RawMqttClient(tb.host, tb.mqtt_port) as gw:
        await gw.connect(GATEWAY_TOKEN)
        for device, type_ in connect.items():
            assert (
                await gw.publish("v1/gateway/connect", orjson.dumps({"device": device, "type": type_})) == 0
            )
        assert await gw.publish("v1/gateway/telemetry", orjson.dumps(telemetry)) == 0
        posts = []
        try:
            while True:
                posts.append(await asyncio.wait_for(capture.requests.get(), 1.0))
        except TimeoutError:
            return posts


async def test_an_unprovisioned_motor_announced_as_motor_reaches_the_webhook() -> None:
    async with tenant() as (tb, capture):
        posts = await post_and_collect(
            tb, capture, {"motor_09": [{"roundsCompleted": 1}]}, connect={"motor_09": "motor"}
        )
        motor = tb.hub.registry.by_name["motor_09"]
        assert (motor.type, motor.created_by_gateway) == ("motor", "pi-gateway-01")
        assert tb.hub.registry.profile_of(motor).rule_chain == "giftwheel"
        assert tb.hub.stats["devices_created_by_gateways"] == 1
    assert [(p["headers"]["x-device-name"], p["body"]) for p in posts] == [
        ("motor_09", b'{"roundsCompleted":1}')
    ]


async def test_a_motor_announced_with_another_type_lands_on_a_new_profile_and_the_root_chain() -> None:
    """The connector once announced "stepper": ThingsBoard makes a "stepper" profile with no default rule
    chain, so the motor's telemetry goes to the root chain (saved, never posted) and the cloud hears
    nothing of it."""
    async with tenant() as (tb, capture):
        posts = await post_and_collect(
            tb, capture, {"motor_09": [{"roundsCompleted": 1}]}, connect={"motor_09": "stepper"}
        )
        motor = tb.hub.registry.by_name["motor_09"]
        profile = tb.hub.registry.profile_of(motor)
        assert (motor.type, profile.name, profile.rule_chain, profile.queue) == (
            "stepper",
            "stepper",
            None,
            None,
        )
        assert profile.auto_created
        assert motor.latest["roundsCompleted"][1] == 1  # the root chain saved it
        assert tb.hub.root_chain_name == "Root Rule Chain"
    assert posts == []


async def test_an_existing_device_keeps_its_profile_whatever_type_the_gateway_announces() -> None:
    async with tenant({"name": "motor_01", "type": "motor"}) as (tb, capture):
        posts = await post_and_collect(
            tb, capture, {"motor_01": [{"roundsCompleted": 2}]}, connect={"motor_01": "stepper"}
        )
        assert tb.hub.registry.by_name["motor_01"].type == "motor"
        assert "stepper" not in tb.hub.registry.profiles
        assert tb.hub.stats["devices_created_by_gateways"] == 0
    assert [p["body"] for p in posts] == [b'{"roundsCompleted":2}']


async def test_telemetry_for_an_unannounced_device_creates_it_with_the_default_type() -> None:
    async with tenant() as (tb, capture):
        posts = await post_and_collect(tb, capture, {"motor_07": [{"roundsCompleted": 1}]}, connect={})
        assert tb.hub.registry.by_name["motor_07"].type == "default"
    assert posts == []


@pytest.mark.parametrize(
    ("chains", "profiles", "error"),
    [
        (["root", "root2"], [], "more than one root rule chain"),
        (["plain", "shipped"], [], "no root rule chain"),
        (["root"], PROFILES, "device profiles name rule chains that are not loaded: dispatcher -> giftwheel"),
    ],
)
async def test_chain_set_errors_stop_the_emulator_before_it_listens(
    tmp_path: Path, chains: list[str], profiles: list[dict[str, Any]], error: str
) -> None:
    files = {
        "root": STOCK_ROOT_CHAIN,
        "root2": small_chain(tmp_path, root=True, name="Second Root"),
        "plain": small_chain(tmp_path, root=False, name="Plain"),
        "shipped": SHIPPED_CHAIN,
    }
    with pytest.raises(ChainError, match=error):
        InProcessEmulator([GATEWAY], profiles=profiles, rule_chain=[files[c] for c in chains])
