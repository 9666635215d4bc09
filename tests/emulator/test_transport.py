"""ThingsBoard's MQTT transport behaviour, asserted on the wire with a raw client (MQTT 3.1.1 and 5).

Each expectation cites the ThingsBoard code path it follows (see docs/thingsboard.md, "Bad input").
"""

from __future__ import annotations

import asyncio

import orjson
import pytest

from cloud.mqtt import codec
from devstack.tb_emulator.harness import InProcessEmulator
from devstack.tb_emulator.raw_client import RawMqttClient
from tests.emulator.conftest import DISPATCHER_TOKEN, GATEWAY_TOKEN

V3, V5 = codec.MQTT_3_1_1, codec.MQTT_5


async def connected(tb: InProcessEmulator, token: str, version: int = V3) -> RawMqttClient:
    client = RawMqttClient(tb.host, tb.mqtt_port, version=version)
    assert (await client.connect(token)).reason_code == 0
    return client


@pytest.mark.parametrize(
    ("version", "username", "password", "client_id", "code"),
    [
        (V3, "wrong", None, "c1", 0x05),  # ReturnCodeResolver: only a username -> bad credentials
        (V3, None, None, "c1", 0x02),  # nothing but a client id -> identifier rejected
        (V5, "wrong", None, "c1", 0x86),
        (V5, None, None, "c1", 0x85),
        (V5, "wrong", b"pw", "", 0x87),
    ],
)
async def test_bad_credentials_get_thingsboards_connack_codes(
    tb: InProcessEmulator,
    version: int,
    username: str | None,
    password: bytes | None,
    client_id: str,
    code: int,
) -> None:
    async with RawMqttClient(tb.host, tb.mqtt_port, version=version) as client:
        connack = await client.connect(username, client_id=client_id, password=password)
        assert connack.reason_code == code
        await client.wait_closed()


async def test_connack_session_present_is_not_clean_session(tb: InProcessEmulator) -> None:
    async with RawMqttClient(tb.host, tb.mqtt_port) as client:
        assert (await client.connect(DISPATCHER_TOKEN, clean=False)).session_present is True


@pytest.mark.parametrize(("version", "failure"), [(V3, 0x80), (V5, 0x8F)])
async def test_subscriptions_match_exact_strings_only(
    tb: InProcessEmulator, version: int, failure: int
) -> None:
    async with await connected(tb, DISPATCHER_TOKEN, version) as client:
        codes = await client.subscribe(
            "v1/devices/me/rpc/request/+", "v1/devices/me/rpc/request/#", "v1/devices/me/#", "#", qos=2
        )
        # granted QoS is capped at 1 (MAX_SUPPORTED_QOS_LVL)
        assert codes == [1, failure, failure, failure]


async def test_malformed_json_closes_a_v3_session(tb: InProcessEmulator) -> None:
    async with await connected(tb, "sensor-token", V3) as client:
        with pytest.raises(ConnectionError):
            await client.publish("v1/devices/me/telemetry", b"{not json")
        await client.wait_closed()


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("v1/devices/me/telemetry", b"{not json"),
        ("v1/devices/me/telemetry", b'"a string"'),
        ("v1/devices/me/telemetry", b'{"ts": [1, 2], "values": {"a": 1}}'),  # IllegalStateException
        ("v1/devices/me/telemetry", b'{"ts": 1, "values": 7}'),
        ("v1/devices/me/attributes", b"[1, 2]"),
        ("v1/devices/me/rpc/request/1", b'["method"]'),
        ("v1/devices/me/attributes/request/1_0", b"{}"),  # Integer.parseInt, not Python's int()
        ("v1/devices/me/rpc/response/1 ", b"{}"),
        ("v1/devices/me/attributes/request/1", b""),  # Gson's JsonNull: not an object
        ("v1/devices/me/attributes/request/1", b'{"clientKeys": null}'),  # JsonNull.getAsString
    ],
)
async def test_bad_payload_gets_puback_0x99_on_v5_and_session_stays(
    tb: InProcessEmulator, topic: str, payload: bytes
) -> None:
    async with await connected(tb, "sensor-token", V5) as client:
        assert await client.publish(topic, payload) == 0x99
        assert await client.publish("v1/devices/me/telemetry", b'{"ok": 1}') == 0
    await tb.settled()
    assert tb.hub.registry.by_name["sensor"].latest["ok"][1] == 1


@pytest.mark.parametrize(
    ("topic", "payload"),
    [
        ("v1/devices/me/rpc/request/abc", b'{"method": "m", "params": {}}'),  # Integer.parseInt
        ("v1/devices/me/rpc/request/1", b'{"params": {}}'),  # NullPointerException
        ("v1/devices/me/rpc/request/1", b'{"method": null}'),  # JsonNull.getAsString
    ],
)
async def test_client_rpc_errors_past_the_adaptor_close_the_session(
    tb: InProcessEmulator, topic: str, payload: bytes
) -> None:
    """processToServerRpcRequestMsg catches only IllegalStateException and JsonSyntaxException: the
    rest reaches MqttTransportHandler.exceptionCaught, closeCtx(SERVER_SHUTTING_DOWN)."""
    async with await connected(tb, "sensor-token", V5) as client:
        with pytest.raises(ConnectionError):
            await client.publish(topic, payload)
        await client.wait_closed()
        assert client.disconnect == codec.Disconnect(0x8B)


async def test_malformed_json_at_qos0_closes_a_v5_session_with_reason(tb: InProcessEmulator) -> None:
    async with await connected(tb, "sensor-token", V5) as client:
        await client.publish("v1/devices/me/telemetry", b"{not json", qos=0)
        await client.wait_closed()
        assert client.disconnect == codec.Disconnect(0x99)


@pytest.mark.parametrize(("version", "code"), [(V3, 0), (V5, 0x90)])
async def test_unknown_topic_is_acked_topic_name_invalid(
    tb: InProcessEmulator, version: int, code: int
) -> None:
    async with await connected(tb, "sensor-token", version) as client:
        assert await client.publish("v1/devices/me/nonsense", b"{}") == code
        assert await client.publish("v1/devices/me/telemetry", b'{"still": "connected"}') == 0


async def test_gateway_topics_from_a_plain_device_get_no_puback(tb: InProcessEmulator) -> None:
    async with await connected(tb, "sensor-token", V5) as client:
        with pytest.raises(TimeoutError):
            await client.publish("v1/gateway/telemetry", b'{"x": [{"a": 1}]}', timeout_s=0.5)
        assert "x" not in tb.hub.registry.by_name


async def test_unknown_gateway_topic_and_bad_gateway_shape(tb: InProcessEmulator) -> None:
    async with await connected(tb, GATEWAY_TOKEN, V5) as gw:
        assert await gw.publish("v1/gateway/nonsense", b"{}") == 0x90
        # valid JSON of the wrong shape is a RuntimeException in ThingsBoard: PUBACK 0x83, then close
        assert await gw.publish("v1/gateway/connect", b'{"type": "motor"}') == 0x83
        await gw.wait_closed()
        assert gw.disconnect == codec.Disconnect(0x83)


@pytest.mark.parametrize("version", [V3, V5])
async def test_unconvertible_gateway_telemetry_is_ack_or_close(tb: InProcessEmulator, version: int) -> None:
    async with await connected(tb, GATEWAY_TOKEN, version) as gw:
        if version == V5:  # ackOrClose: PUBACK 0x99, the session stays
            assert await gw.publish("v1/gateway/telemetry", b'{"motor_01": [7]}') == 0x99
            assert await gw.publish("v1/gateway/telemetry", b'{"motor_01": [{"a": 1}]}') == 0
            return
        with pytest.raises(ConnectionError):
            await gw.publish("v1/gateway/telemetry", b'{"motor_01": [7]}')
        await gw.wait_closed()
        assert gw.disconnect is None  # channel.close(): no PUBACK, no DISCONNECT


@pytest.mark.parametrize("version", [V3, V5])
async def test_oversized_packet_disconnects(tb: InProcessEmulator, version: int) -> None:
    async with await connected(tb, "sensor-token", version) as client:
        big = orjson.dumps({"blob": "x" * 70_000})
        with pytest.raises(ConnectionError):
            await client.publish("v1/devices/me/telemetry", big)
        await client.wait_closed()
        assert client.disconnect == (codec.Disconnect(0x81) if version == V5 else None)
    assert "blob" not in tb.hub.registry.by_name["sensor"].latest


async def test_qos0_is_processed_without_puback(tb: InProcessEmulator) -> None:
    async with await connected(tb, "sensor-token") as client:
        await client.publish("v1/devices/me/telemetry", b'{"q0": 1}', qos=0)
        await client.publish("v1/devices/me/telemetry", b'{"q1": 1}')  # PUBACKs are in order
        assert not client.acks
    await tb.settled()
    assert {"q0", "q1"} <= set(tb.hub.registry.by_name["sensor"].latest)


async def test_me_topics_are_per_connection(tb: InProcessEmulator) -> None:
    async with (
        await connected(tb, "sensor-token") as sensor,
        await connected(tb, DISPATCHER_TOKEN) as dispatcher,
    ):
        await sensor.subscribe("v1/devices/me/rpc/request/+")
        await dispatcher.subscribe("v1/devices/me/rpc/request/+")
        request = tb.hub.registry.by_name["sensor"]
        from devstack.tb_emulator.rpc import new_request

        tb.hub.submit_rpc(request, new_request(method="ping", params={}, timeout_ms=5000))
        message = await sensor.next_message()
        assert (message.topic, message.payload) == (
            "v1/devices/me/rpc/request/0",
            b'{"method":"ping","params":{}}',
        )
        with pytest.raises(TimeoutError):
            await dispatcher.next_message(timeout_s=0.3)


async def test_attribute_request_response_shapes(tb: InProcessEmulator) -> None:
    async with await connected(tb, "sensor-token") as client:
        await client.publish("v1/devices/me/attributes", b'{"fw": "v1.0", "model": "x"}')
        await tb.settled()  # saved by the chain's attributes node, after the PUBACK
        await client.publish(
            "v1/devices/me/attributes/request/5", b'{"clientKeys": "fw", "sharedKeys": "interval"}'
        )
        first = await client.next_message()
        await client.publish("v1/devices/me/attributes/request/6", b"{}")
        every = await client.next_message()
        await client.publish("v1/devices/me/attributes/request/7", b'{"sharedKeys": "nope"}')
        empty = await client.next_message()
        # toStringSet splits on ',' and trims nothing: " model" is no key of this device
        await client.publish("v1/devices/me/attributes/request/8", b'{"clientKeys": "fw, model"}')
        untrimmed = await client.next_message()
    assert (first.topic, first.payload) == (
        "v1/devices/me/attributes/response/5",
        b'{"client":{"fw":"v1.0"},"shared":{"interval":5}}',
    )
    assert orjson.loads(every.payload) == {"client": {"fw": "v1.0", "model": "x"}, "shared": {"interval": 5}}
    assert empty.payload == b"{}"
    assert orjson.loads(untrimmed.payload) == {"client": {"fw": "v1.0"}}


async def test_pingreq_and_disconnect(tb: InProcessEmulator) -> None:
    async with await connected(tb, "sensor-token", V5) as client:
        client.write(codec.encode_pingreq())
        client.write(codec.encode_disconnect(0, V5))
        await client.wait_closed()
    await asyncio.sleep(0.05)
    assert not tb.hub.sessions


async def test_rpc_response_payload_is_kept_as_text_whatever_it_is(tb: InProcessEmulator) -> None:
    """processToDeviceRpcResponseMsg: no JSON check, an empty or invalid-UTF-8 payload included."""
    async with await connected(tb, "sensor-token", V5) as client:
        assert await client.publish("v1/devices/me/rpc/response/99", b"") == 0
        assert await client.publish("v1/devices/me/rpc/response/98", b"\xff") == 0
