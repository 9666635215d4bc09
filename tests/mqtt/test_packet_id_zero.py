"""The worker's MQTT client past ThingsBoard's packet id wrap (the emulator started near it): it
takes the QoS 1 publish with packet id 0 and does not PUBACK it, which ThingsBoard would close the
session for (netty MqttDecoder "invalid messageId"); later ids are acknowledged as ever."""

from __future__ import annotations

import httpx
import orjson

from cloud.mqtt.client import MqttClient
from devstack.tb_emulator.harness import InProcessEmulator
from tests.emulator.conftest import DEVICES
from tests.waiting import wait_until


async def test_a_publish_with_packet_id_zero_is_taken_and_the_session_kept() -> None:
    received: list[str] = []
    async with (
        InProcessEmulator(DEVICES) as tb,
        httpx.AsyncClient(base_url=tb.http_url, timeout=10) as http,
    ):
        tb.hub.faults.msg_id_start = 65_533
        client = await MqttClient.connect(
            tb.host,
            tb.mqtt_port,
            client_id="sensor",
            username="sensor-token",
            on_message=lambda _topic, payload: received.append(orjson.loads(payload)["method"]),
        )
        try:
            assert await client.subscribe("v1/devices/me/rpc/request/+", qos=1) == 1
            methods = ["a", "b", "c", "d", "e"]  # msg ids 65,534 .. 65,538: wire ids 65,534, 65,535, 0, 1, 2
            for method in methods:
                response = await http.post("/api/rpc/oneway/sensor", json={"method": method})
                assert response.status_code == 200
            await wait_until(lambda: len(received) == len(methods), what="every RPC request")
            await client.publish("v1/devices/me/telemetry", b'{"alive": 1}')
            assert received == methods
            assert client.is_connected
            (session,) = (await http.get("/api/sessions")).json()
            assert session["msgId"] == 65_538
        finally:
            await client.close()
