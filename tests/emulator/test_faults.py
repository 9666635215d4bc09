"""Fault injection over the HTTP side, for the other areas' crash and latency tests."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson

from devstack.tb_emulator.harness import InProcessEmulator
from devstack.tb_emulator.raw_client import RawMqttClient
from tests.emulator.conftest import DISPATCHER_TOKEN, GATEWAY_TOKEN


async def connect(tb: InProcessEmulator, token: str, *subs: str) -> RawMqttClient:
    client = RawMqttClient(tb.host, tb.mqtt_port)
    assert (await client.connect(token)).reason_code == 0
    if subs:
        await client.subscribe(*subs)
    return client


async def test_dropped_puback_still_processes_the_message(
    tb_fast: InProcessEmulator, http: httpx.AsyncClient
) -> None:
    patch = {"drop_pubacks": 1, "drop_pubacks_device": "sensor"}
    assert (await http.patch("/api/faults", json=patch)).json()["drop_pubacks"] == 1
    async with await connect(tb_fast, "sensor-token") as sensor:
        sent = asyncio.create_task(sensor.publish("v1/devices/me/telemetry", b'{"n": 1}', timeout_s=0.5))
        await asyncio.sleep(0.1)
        assert tb_fast.hub.registry.by_name["sensor"].latest["n"][1] == 1  # processed...
        try:
            await sent
            raise AssertionError("PUBACK should have been dropped")
        except TimeoutError:
            pass  # ...but never acknowledged: a real client re-sends a duplicate
        assert await sensor.publish("v1/devices/me/telemetry", b'{"n": 2}') == 0
    assert (await http.get("/api/faults")).json()["drop_pubacks"] == 0


async def test_puback_delay(tb_fast: InProcessEmulator, http: httpx.AsyncClient) -> None:
    await http.patch("/api/faults", json={"puback_delay_ms": 300})
    async with await connect(tb_fast, "sensor-token") as sensor:
        started = time.monotonic()
        assert await sensor.publish("v1/devices/me/telemetry", b'{"n": 1}') == 0
        assert time.monotonic() - started >= 0.29
    await http.post("/api/faults/reset")
    assert (await http.get("/api/faults")).json()["puback_delay_ms"] == 0


async def test_gateway_reply_delay_stretches_the_dispatcher_round_trip(
    tb_fast: InProcessEmulator, http: httpx.AsyncClient
) -> None:
    await http.patch("/api/faults", json={"gateway_reply_delay_ms": 300})
    async with (
        await connect(tb_fast, GATEWAY_TOKEN, "v1/gateway/rpc") as gw,
        await connect(tb_fast, DISPATCHER_TOKEN, "v1/devices/me/rpc/response/+") as dispatcher,
    ):
        await gw.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
        body = {
            "method": "rotate",
            "params": {"device": "motor_01", "commandId": "c-cccccccccc", "rounds": 1},
        }
        started = time.monotonic()
        await dispatcher.publish("v1/devices/me/rpc/request/1", orjson.dumps(body))
        request = orjson.loads((await gw.next_message()).payload)
        reply = {"device": "motor_01", "id": request["data"]["id"], "data": {"accepted": True}}
        assert await gw.publish("v1/gateway/rpc", orjson.dumps(reply)) == 0
        assert (await dispatcher.next_message()).payload == b'{"accepted":true}'
        assert time.monotonic() - started >= 0.29


async def test_cut_session_drops_the_link_and_its_sub_devices(
    tb_fast: InProcessEmulator, http: httpx.AsyncClient
) -> None:
    async with await connect(tb_fast, GATEWAY_TOKEN, "v1/gateway/rpc") as gw:
        await gw.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
        assert tb_fast.hub.registry.by_name["motor_01"].rpc.session_count == 1
        assert (await http.post("/api/faults/cut-session/pi-gateway-01")).json() == {"cut": 1}
        await gw.wait_closed()
        assert gw.disconnect is None  # no DISCONNECT packet: the link just died
    await asyncio.sleep(0.05)
    assert tb_fast.hub.registry.by_name["motor_01"].rpc.session_count == 0
    assert not tb_fast.hub.sessions


async def test_bad_fault_settings_are_refused(http: httpx.AsyncClient) -> None:
    response = await http.patch("/api/faults", json={"drop_pubacks": -1})
    assert response.status_code == 400
    response = await http.patch("/api/faults", json={"no_such_fault": 1})
    assert response.status_code == 400
