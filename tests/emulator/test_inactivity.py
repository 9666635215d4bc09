"""Session inactivity (TB_TRANSPORT_SESSIONS_INACTIVITY_TIMEOUT) and "overwrite activity time"."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from cloud.mqtt import codec
from devstack.tb_emulator.harness import InProcessEmulator
from devstack.tb_emulator.hub import HubSettings
from devstack.tb_emulator.raw_client import RawMqttClient

TIMEOUT_S = 0.3


def devices(overwrite: bool) -> list[dict[str, object]]:
    return [
        {"name": "sensor", "token": "sensor-token"},
        {"name": "gw", "token": "gw-token", "gateway": True, "overwrite_activity_time": overwrite},
    ]


async def test_silent_session_is_closed_with_reason() -> None:
    settings = HubSettings(session_inactivity_timeout_s=TIMEOUT_S)
    async with (
        InProcessEmulator(devices(False), hub_settings=settings) as tb,
        RawMqttClient(tb.host, tb.mqtt_port, version=codec.MQTT_5) as client,
    ):
        await client.connect("sensor-token")
        await client.wait_closed(timeout_s=3)
        assert client.disconnect == codec.Disconnect(0xA0)


@pytest.mark.parametrize("overwrite", [False, True])
async def test_pinging_gateway_keeps_sub_devices_only_with_overwrite_activity_time(overwrite: bool) -> None:
    settings = HubSettings(session_inactivity_timeout_s=TIMEOUT_S)
    async with (
        InProcessEmulator(devices(overwrite), hub_settings=settings) as tb,
        RawMqttClient(tb.host, tb.mqtt_port, version=codec.MQTT_5) as gw,
    ):
        await gw.connect("gw-token")
        await gw.subscribe("v1/gateway/rpc")
        await gw.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
        for _ in range(15):  # 1.5 s of keepalive pings and nothing else
            gw.write(codec.encode_pingreq())
            await asyncio.sleep(0.1)
        assert not gw.closed.is_set()  # PINGREQ is activity for the gateway itself
        motor = tb.hub.registry.by_name["motor_01"]
        if overwrite:
            assert motor.rpc.session_count == 1
            assert gw.messages.empty()
        else:
            assert motor.rpc.session_count == 0
            notice = await gw.next_message(timeout_s=1)
            assert (notice.topic, orjson.loads(notice.payload)) == (
                "v1/gateway/disconnect",
                {"device": "motor_01", "reason": 0xA0},
            )
