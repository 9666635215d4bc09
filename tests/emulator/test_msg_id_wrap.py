"""ThingsBoard's outgoing packet ids: an int per session that never wraps, its low 16 bits on the
wire (DeviceSessionCtx.nextMsgId, netty MqttEncoder), so the 65,536th publish carries id 0, and a
client packet with id 0 closes the session (netty MqttDecoder "invalid messageId",
MqttTransportHandler.channelRead: MALFORMED_PACKET). ``msg_id_start`` (a test-only fault) starts a
session's counter near the wrap."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from cloud.mqtt import codec
from devstack.tb_emulator.harness import InProcessEmulator
from devstack.tb_emulator.raw_client import RawMqttClient
from devstack.tb_emulator.session import RC_MALFORMED_PACKET

RPC_REQUESTS = "v1/devices/me/rpc/request/+"


async def sensor(tb: InProcessEmulator, version: int = codec.MQTT_3_1_1) -> RawMqttClient:
    client = RawMqttClient(tb.host, tb.mqtt_port, version=version)
    assert (await client.connect("sensor-token")).reason_code == 0
    return client


async def oneway(http: httpx.AsyncClient, method: str) -> None:
    assert (await http.post("/api/rpc/oneway/sensor", json={"method": method})).status_code == 200


async def still_open(client: RawMqttClient) -> bool:
    """The session answers a publish (the emulator handles a connection's packets in order)."""
    return await client.publish("v1/devices/me/telemetry", b'{"alive": 1}') == 0


async def test_every_publish_takes_an_id_and_the_wire_id_wraps_to_zero(
    tb_fast: InProcessEmulator, http: httpx.AsyncClient
) -> None:
    await http.patch("/api/faults", json={"msg_id_start": 65_533})
    async with await sensor(tb_fast) as client:
        await client.subscribe(RPC_REQUESTS, qos=1)
        await client.subscribe("v1/devices/me/attributes", qos=0)
        await oneway(http, "a")  # msg id 65,534
        first = await client.next_message()
        update = await http.post("/api/devices/sensor/attributes/shared", json={"interval": 7})
        assert update.status_code == 200
        attributes = await client.next_message()  # QoS 0: msg id 65,535, not on the wire
        await oneway(http, "b")  # 65,536
        await oneway(http, "c")  # 65,537
        wrapped = [await client.next_message(), await client.next_message()]
        assert (first.qos, first.packet_id) == (1, 65_534)
        assert (attributes.qos, attributes.packet_id) == (0, None)
        assert [(m.packet_id, orjson.loads(m.payload)["method"]) for m in wrapped] == [(0, "b"), (1, "c")]
        (view,) = (await http.get("/api/sessions")).json()
        assert view["msgId"] == 65_537  # the int does not wrap
        client.puback(1)
        assert await still_open(client)


@pytest.mark.parametrize("version", [codec.MQTT_3_1_1, codec.MQTT_5])
async def test_a_puback_for_packet_id_zero_closes_the_session(
    tb_fast: InProcessEmulator, http: httpx.AsyncClient, version: int
) -> None:
    await http.patch("/api/faults", json={"msg_id_start": 65_535})
    async with await sensor(tb_fast, version) as client:
        await client.subscribe(RPC_REQUESTS, qos=1)
        await oneway(http, "zero")
        assert (await client.next_message()).packet_id == 0
        client.puback(0)
        await client.wait_closed()
    # MQTT 5: closeCtx(MALFORMED_PACKET) says why; 3.1.1 has no DISCONNECT from a server
    expected = RC_MALFORMED_PACKET if version == codec.MQTT_5 else None
    assert (client.disconnect.reason_code if client.disconnect else None) == expected
    assert (await http.get("/api/sessions")).json() == []


@pytest.mark.parametrize(
    "frame",
    [
        codec.encode_subscribe(0, [(RPC_REQUESTS, 1)], codec.MQTT_3_1_1),
        codec.encode_unsubscribe(0, [RPC_REQUESTS], codec.MQTT_3_1_1),
        codec.encode_publish("v1/devices/me/telemetry", b'{"n": 1}', 1, 0, codec.MQTT_3_1_1),
    ],
    ids=["subscribe", "unsubscribe", "qos1-publish"],
)
async def test_client_packets_with_packet_id_zero_close_the_session(
    tb_fast: InProcessEmulator, http: httpx.AsyncClient, frame: bytes
) -> None:
    async with await sensor(tb_fast) as client:
        client.write(frame)
        await client.wait_closed()
    assert tb_fast.hub.registry.by_name["sensor"].latest.get("n") is None


@pytest.mark.parametrize(("start", "status"), [(0, "DELIVERED"), (65_536, "TIMEOUT")])
async def test_rpc_acks_are_matched_on_the_untruncated_id(
    tb_fast: InProcessEmulator, http: httpx.AsyncClient, start: int, status: str
) -> None:
    """rpcAwaitingAck is keyed by the int, the PUBACK brings its low 16 bits: past the wrap a
    PUBACK matches nothing and the RPC gets TIMEOUT after the delivery timeout (0.3 s here)."""
    await http.patch("/api/faults", json={"msg_id_start": start})
    async with await sensor(tb_fast) as client:
        await client.subscribe(RPC_REQUESTS, qos=1)
        body = {"method": "p", "persistent": True, "timeout": 5000}
        rpc_id = (await http.post("/api/rpc/twoway/sensor", json=body)).json()["rpcId"]
        request = await client.next_message()
        assert request.packet_id == 1
        client.puback(1)
        await asyncio.sleep(0.5)
        assert await still_open(client)
        record = (await http.get(f"/api/rpc/{rpc_id}")).json()
    assert [h["status"] for h in record["history"]] == ["QUEUED", "SENT", status]
