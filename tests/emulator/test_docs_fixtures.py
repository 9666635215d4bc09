"""ThingsBoard's documented payloads, recorded in fixtures/tb_docs.json, through the emulator.

Uplink: the documented bytes are published as they are and must be accepted. Downlink: the
emulator's bytes must equal the documented JSON in ThingsBoard's compact (gson) form.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import orjson

from devstack.tb_emulator.harness import InProcessEmulator
from devstack.tb_emulator.raw_client import RawMqttClient
from tests.emulator.conftest import GATEWAY_TOKEN

DOCS: dict[str, Any] = json.loads((Path(__file__).parent / "fixtures" / "tb_docs.json").read_text())


def compact(text: str) -> bytes:
    """The documented JSON as ThingsBoard writes it: no spaces, key order kept."""
    return orjson.dumps(json.loads(text))


async def test_documented_device_telemetry_shapes(tb: InProcessEmulator) -> None:
    async with RawMqttClient(tb.host, tb.mqtt_port) as sensor:
        await sensor.connect("sensor-token")
        for payload in DOCS["device_telemetry"]["publish"]:
            assert await sensor.publish("v1/devices/me/telemetry", payload.encode()) == 0
        assert (
            await sensor.publish("v1/devices/me/telemetry", DOCS["device_telemetry"]["value_types"].encode())
            == 0
        )
    await tb.settled()
    device = tb.hub.registry.by_name["sensor"]
    # latest = the highest ts: the first publish got the server's clock, newer than 2016
    assert device.latest["temperature"][1] == 22.5
    assert device.latest["temperature"][0] > 1451649601000
    assert [(ts, v) for ts, v in device.history if ts < 1500000000000] == [
        (1451649600512, {"temperature": 22.5, "humidity": 61}),
        (1451649600000, {"temperature": 22.5, "humidity": 61}),
        (1451649601000, {"temperature": 22.7, "humidity": 60}),
    ]
    assert {k: v for k, (_, v) in device.latest.items() if k in ("object", "array", "double", "long")} == {
        "double": 42.0,
        "long": 73,
        "object": {"nested": {"key": "value"}},
        "array": [1, 2, 3],
    }


async def test_documented_gateway_connect_telemetry_and_attributes(tb: InProcessEmulator) -> None:
    docs = DOCS["gateway_attributes"]
    async with RawMqttClient(tb.host, tb.mqtt_port) as gw:
        await gw.connect(GATEWAY_TOKEN)
        await gw.subscribe("v1/gateway/attributes", "v1/gateway/attributes/response")
        assert await gw.publish("v1/gateway/connect", DOCS["gateway_connect"]["publish"].encode()) == 0
        assert await gw.publish("v1/gateway/telemetry", DOCS["gateway_telemetry"]["publish"].encode()) == 0
        assert await gw.publish("v1/gateway/attributes", docs["publish"].encode()) == 0
        await tb.settled()  # the chain saves them after the PUBACK; the request reads what is saved
        assert await gw.publish("v1/gateway/attributes/request", docs["request"].encode()) == 0
        response = await gw.next_message()
        tb.hub.update_shared_attributes(
            tb.hub.registry.by_name["Device A"], {"attribute1": "value1", "attribute2": 42}
        )
        update = await gw.next_message()
    await tb.settled()
    registry = tb.hub.registry.by_name
    assert (registry["Device A"].type, registry["Device B"].type) == ("Sensor A", "default")
    assert registry["Device A"].latest == {
        "temperature": (1483228801000, 43),
        "humidity": (1483228801000, 82),
    }
    assert (response.topic, response.payload) == ("v1/gateway/attributes/response", compact(docs["response"]))
    assert (update.topic, update.payload) == ("v1/gateway/attributes", compact(docs["update"]))


async def test_documented_gateway_rpc_command_and_reply(tb: InProcessEmulator) -> None:
    docs = DOCS["gateway_rpc"]
    async with (
        RawMqttClient(tb.host, tb.mqtt_port) as gw,
        httpx.AsyncClient(base_url=tb.http_url, timeout=10) as http,
    ):
        await gw.connect(GATEWAY_TOKEN)
        await gw.subscribe("v1/gateway/rpc")
        await gw.publish("v1/gateway/connect", b'{"device": "Device A"}')
        # request ids count from 0 per device; one warm-up RPC makes the documented id 1
        warmup = asyncio.create_task(http.post("/api/rpc/oneway/Device A", json={"method": "warmup"}))
        await gw.next_message()
        await warmup
        call = asyncio.create_task(
            http.post("/api/rpc/twoway/Device A", json={"method": "toggle_gpio", "params": {"pin": 1}})
        )
        command = await gw.next_message()
        assert (command.topic, command.payload) == ("v1/gateway/rpc", compact(docs["command"]))
        assert await gw.publish("v1/gateway/rpc", docs["reply"].encode()) == 0
        response = await call
    assert (response.status_code, response.json()) == (200, {"success": True})


async def test_documented_client_rpc_round_trip(tb: InProcessEmulator) -> None:
    docs = DOCS["device_client_rpc"]
    async with RawMqttClient(tb.host, tb.mqtt_port) as sensor:
        await sensor.connect("sensor-token")
        await sensor.subscribe("v1/devices/me/rpc/response/+")
        assert await sensor.publish(docs["topic"], docs["publish"].encode()) == 0
        reply = await sensor.next_message()
    # the shipped chain routes every client RPC to change originator by $[params.device]; with no
    # device named, it fails and the reply node answers with the request (see docs/thingsboard.md)
    assert (reply.topic, reply.payload) == (docs["response_topic"], compact(docs["publish"]))
