"""One session per device, as ThingsBoard keeps it (ACTORS_MAX_CONCURRENT_SESSION_PER_DEVICE, default 1).

DeviceActorMessageProcessor keeps a device's sessions in insertion order and evicts the eldest when a
new one opens; MqttTransportHandler.onRemoteSessionCloseCommand closes the evicted channel (MQTT 5:
DISCONNECT 0x8E first); a gateway's sub-device session counts as a session of the sub-device and is
dropped silently from its gateway (AbstractGatewayDeviceSessionContext). Raw client for the wire,
the official tb-mqtt-client for what a real client does about it (it reconnects: both flap).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from tb_device_mqtt import TBDeviceMqttClient

from cloud.mqtt import codec
from devstack.tb_emulator.harness import EmulatorProcess, InProcessEmulator
from devstack.tb_emulator.hub import HubSettings
from devstack.tb_emulator.raw_client import RawMqttClient
from devstack.tb_emulator.session import RC_SESSION_TAKEN_OVER
from devstack.waiting import wait_until
from tests.emulator.conftest import DEVICES, DISPATCHER_TOKEN, GATEWAY_TOKEN

V3, V5 = codec.MQTT_3_1_1, codec.MQTT_5
SENSOR_TOKEN = "sensor-token"
SECOND_GATEWAY_TOKEN = "pi-gateway-02-token"
TWO_GATEWAYS: list[dict[str, Any]] = [
    *DEVICES,
    {"name": "pi-gateway-02", "token": SECOND_GATEWAY_TOKEN, "type": "gateway", "gateway": True},
]


@pytest.fixture
async def tb() -> AsyncIterator[InProcessEmulator]:
    async with InProcessEmulator(TWO_GATEWAYS, hub_settings=HubSettings(client_rpc_timeout_s=5)) as emulator:
        yield emulator


async def connected(tb: InProcessEmulator, token: str, version: int = V3) -> RawMqttClient:
    client = RawMqttClient(tb.host, tb.mqtt_port, version=version)
    assert (await client.connect(token)).reason_code == 0
    return client


async def server_rpc(tb: InProcessEmulator, device: str, method: str) -> tuple[int, Any]:
    """A two-way server-side RPC over the emulator's REST side (the test's loop runs the emulator)."""
    async with httpx.AsyncClient(base_url=tb.http_url, timeout=10) as http:
        reply = await http.post(f"/api/rpc/twoway/{device}", json={"method": method, "params": {}})
    return reply.status_code, reply.json()


def sessions_of(tb: InProcessEmulator, device: str) -> list[str]:
    """The device's sessions as the device actor counts them: own connections and sub-device ones."""
    found = [s.id for s in tb.hub.sessions.values() if s.device is not None and s.device.name == device]
    found += [gw_id for gw_id, subs in tb.hub.sub_sessions.items() if device in subs]
    return found


@pytest.mark.parametrize(("version", "disconnect"), [(V3, None), (V5, RC_SESSION_TAKEN_OVER)])
async def test_a_second_session_evicts_the_first(
    tb: InProcessEmulator, version: int, disconnect: int | None
) -> None:
    async with (
        await connected(tb, SENSOR_TOKEN, version) as first,
        await connected(tb, SENSOR_TOKEN, version) as second,
    ):
        await first.wait_closed()
        # MQTT 3.1.1 has no server DISCONNECT: the channel just closes; MQTT 5 says why first.
        assert (first.disconnect.reason_code if first.disconnect else None) == disconnect
        assert await second.publish("v1/devices/me/telemetry", b'{"t": 1}') == 0
        assert sessions_of(tb, "sensor") == [next(iter(tb.hub.sessions))]
        assert tb.hub.stats["sessions_evicted"] == 1


async def test_the_newest_session_gets_the_rpc(tb: InProcessEmulator) -> None:
    async with await connected(tb, SENSOR_TOKEN) as first:
        await first.subscribe("v1/devices/me/rpc/request/+")
        async with await connected(tb, SENSOR_TOKEN) as second:
            await first.wait_closed()
            await second.subscribe("v1/devices/me/rpc/request/+")
            call = asyncio.create_task(server_rpc(tb, "sensor", "getTemperature"))
            request = await second.next_message()
            await second.publish(request.topic.replace("request", "response"), b'{"t": 22}')
            assert await call == (200, {"t": 22})
    assert first.messages.empty()


async def test_the_limit_is_a_setting_and_the_oldest_session_goes() -> None:
    settings = HubSettings(max_concurrent_sessions_per_device=2)
    async with InProcessEmulator(DEVICES, hub_settings=settings) as tb:
        clients = [await connected(tb, SENSOR_TOKEN) for _ in range(3)]
        try:
            await clients[0].wait_closed()
            for client in clients[1:]:
                assert await client.publish("v1/devices/me/telemetry", b'{"t": 1}') == 0
                assert not client.closed.is_set()
            assert len(sessions_of(tb, "sensor")) == 2
        finally:
            for client in clients:
                await client.close()


async def test_a_sub_device_session_counts_and_is_dropped_from_its_gateway_silently(
    tb: InProcessEmulator,
) -> None:
    async with (
        await connected(tb, GATEWAY_TOKEN, V5) as gw1,
        await connected(tb, SECOND_GATEWAY_TOKEN, V5) as gw2,
    ):
        for gw in (gw1, gw2):
            await gw.subscribe("v1/gateway/rpc")
            await gw.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
        # motor_01's session on gw1 is gone; gw1 itself stays, and is not told (no v1/gateway/disconnect)
        assert sessions_of(tb, "motor_01") == [gw2_id := sessions_of(tb, "pi-gateway-02")[0]]
        call = asyncio.create_task(server_rpc(tb, "motor_01", "status"))
        request = orjson.loads((await gw2.next_message()).payload)
        await gw2.publish(
            "v1/gateway/rpc",
            orjson.dumps({"device": "motor_01", "id": request["data"]["id"], "data": {"on": 2}}),
        )
        assert await call == (200, {"on": 2})
        assert gw1.messages.empty()
        assert not gw1.closed.is_set()
        # gw1's next message for motor_01 opens a sub-device session again, which evicts gw2's
        await gw1.publish("v1/gateway/telemetry", b'{"motor_01": [{"heartbeat": 1}]}')
        assert sessions_of(tb, "motor_01") == sessions_of(tb, "pi-gateway-01")
        assert sessions_of(tb, "motor_01") != [gw2_id]
        call = asyncio.create_task(server_rpc(tb, "motor_01", "status"))
        request = orjson.loads((await gw1.next_message()).payload)
        await gw1.publish(
            "v1/gateway/rpc",
            orjson.dumps({"device": "motor_01", "id": request["data"]["id"], "data": {"on": 1}}),
        )
        assert await call == (200, {"on": 1})
        assert gw2.messages.empty()


async def test_an_evicted_gateway_takes_its_sub_device_sessions_along(tb: InProcessEmulator) -> None:
    async with await connected(tb, GATEWAY_TOKEN) as first:
        await first.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
        assert sessions_of(tb, "motor_01")
        async with await connected(tb, GATEWAY_TOKEN) as second:
            await first.wait_closed()
            assert sessions_of(tb, "motor_01") == []
            assert not second.closed.is_set()


async def test_an_answer_for_the_evicted_dispatcher_is_dropped_not_given_to_its_successor(
    tb: InProcessEmulator,
) -> None:
    """Both connect as the one dispatcher device and count request ids from 1: the successor must
    get its own answer, never the one its predecessor asked for (the transport deregistered it)."""
    async with await connected(tb, GATEWAY_TOKEN) as gw:
        await gw.subscribe("v1/gateway/rpc")
        await gw.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
        first = await connected(tb, DISPATCHER_TOKEN)
        await first.subscribe("v1/devices/me/rpc/response/+")
        await first.publish(
            "v1/devices/me/rpc/request/1", b'{"method": "rotate", "params": {"device": "motor_01"}}'
        )
        asked_by_first = orjson.loads((await gw.next_message()).payload)
        async with await connected(tb, DISPATCHER_TOKEN) as second:
            await first.wait_closed()
            await second.subscribe("v1/devices/me/rpc/response/+")
            answer = {"device": "motor_01", "id": asked_by_first["data"]["id"], "data": {"for": "first"}}
            await gw.publish("v1/gateway/rpc", orjson.dumps(answer))
            await second.publish(
                "v1/devices/me/rpc/request/1", b'{"method": "rotate", "params": {"device": "motor_01"}}'
            )
            asked_by_second = orjson.loads((await gw.next_message()).payload)
            answer = {"device": "motor_01", "id": asked_by_second["data"]["id"], "data": {"for": "second"}}
            await gw.publish("v1/gateway/rpc", orjson.dumps(answer))
            reply = await second.next_message()
            assert (reply.topic, reply.payload) == ("v1/devices/me/rpc/response/1", b'{"for":"second"}')
        await first.close()


# ------------------------------------------------------------ a real client: tb-mqtt-client (paho)


@pytest.fixture
def two_sensor_clients(tb_process_limit: EmulatorProcess) -> Iterator[list[TBDeviceMqttClient]]:
    clients = [
        TBDeviceMqttClient(tb_process_limit.host, port=tb_process_limit.mqtt_port, username=SENSOR_TOKEN)
        for _ in range(2)
    ]
    try:
        yield clients
    finally:
        for client in clients:
            client.stop()
            client.disconnect()


@pytest.fixture(params=[1, 2], ids=["limit-1", "limit-2"])
def limit(request: pytest.FixtureRequest) -> int:
    value: int = request.param
    return value


@pytest.fixture
def tb_process_limit(limit: int) -> Iterator[EmulatorProcess]:
    with EmulatorProcess(
        DEVICES, extra_args=("--max-concurrent-sessions-per-device", str(limit))
    ) as emulator:
        yield emulator


@pytest.mark.slow
def test_two_real_clients_on_one_token_flap_unless_the_limit_allows_two(
    tb_process_limit: EmulatorProcess, two_sensor_clients: list[TBDeviceMqttClient], limit: int
) -> None:
    first, second = two_sensor_clients
    first.connect()
    assert first.send_telemetry({"t": 1}).get() == 0
    second.connect()
    assert second.send_telemetry({"t": 2}).get() == 0
    if limit == 2:
        assert tb_process_limit.stats().get("sessions_evicted", 0) == 0
        assert first.is_connected()
        assert second.is_connected()
        return
    # paho reconnects on its own: each reconnect evicts the other client, which reconnects in turn
    wait_until(lambda: tb_process_limit.stats()["sessions_evicted"] >= 4, timeout_s=60, interval_s=0.2)
    assert tb_process_limit.stats()["connects"] >= 5
