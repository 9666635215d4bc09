"""The gateway API's JSON messages read as ThingsBoard reads them: Gson getters, their coercions and
where each exception ends.

Rows name the branch they pin: thingsboard/thingsboard common/transport/mqtt/.../session/
AbstractGatewaySessionHandler.java and MqttTransportHandler.handleGatewayPublishMsg @dfe65d5 for the
handlers, google/gson JsonPrimitive / JsonArray / LazilyParsedNumber @gson-parent-2.13.1 for the
getters (their expected values were checked against Gson 2.13.1 compiled and run on JDK 17).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from cloud.mqtt import codec
from devstack.tb_emulator import gson
from devstack.tb_emulator.gson import (
    IllegalStateException,
    NumberFormatException,
    UnsupportedOperationException,
)
from devstack.tb_emulator.harness import InProcessEmulator
from devstack.tb_emulator.hub import HubSettings
from devstack.tb_emulator.raw_client import RawMqttClient
from devstack.tb_emulator.rpc import RpcResult, new_request
from tests.emulator.conftest import DEVICES, GATEWAY_TOKEN

V5 = codec.MQTT_5
CONNECT, DISCONNECT = "v1/gateway/connect", "v1/gateway/disconnect"
ATTRIBUTES_REQUEST, RPC = "v1/gateway/attributes/request", "v1/gateway/rpc"
TELEMETRY = "v1/gateway/telemetry"
TRANSPORT_API_TIMEOUT_S = 0.5  # short, so a sub-device ThingsBoard cannot create fails quickly

GET_AS_INT = [
    ("number: Integer.parseInt(literal)", "5", 5),
    ("number with a fraction: BigDecimal.intValue truncates", "5.7", 5),
    ("negative fraction: toward zero", "-1.5", -1),
    ("beyond int: (int) Long.parseLong keeps the low 32 bits", "4294967301", 5),
    ("2^31 wraps to Integer.MIN_VALUE", "2147483648", -(2**31)),
    ("exponent: BigDecimal.intValue", "1e10", 1410065408),
    ("NumberLimits: scale of 10,000 or more", "1e10000", NumberFormatException),
    ("string: Integer.parseInt", '"5"', 5),
    ("string with a sign", '"+5"', 5),
    ("string with a fraction: NumberFormatException", '"5.7"', NumberFormatException),
    ("string beyond int: NumberFormatException", '"2147483648"', NumberFormatException),
    ("string with a space: NumberFormatException", '" 5"', NumberFormatException),
    ("boolean: Integer.parseInt('true')", "true", NumberFormatException),
    ("array of one: its element", '["7"]', 7),
    ("nested array of one", "[[7.9]]", 7),
    ("empty array: IllegalStateException", "[]", IllegalStateException),
    ("array of two: IllegalStateException", "[1, 2]", IllegalStateException),
    ("null: UnsupportedOperationException", "null", UnsupportedOperationException),
    ("object: UnsupportedOperationException", "{}", UnsupportedOperationException),
]

GET_AS_BOOLEAN = [
    ("boolean: its value", "true", True),
    ("boolean false", "false", False),
    ('string: Boolean.parseBoolean, "true" in any case', '"TRUE"', True),
    ("string in mixed case", '"tRuE"', True),
    ('"yes" is false', '"yes"', False),
    ('"1" is false', '"1"', False),
    ('"true " (untrimmed) is false', '"true "', False),
    ("number: parseBoolean of its literal, false", "1", False),
    ("array of one: its element", '["True"]', True),
    ("empty array: IllegalStateException", "[]", IllegalStateException),
    ("null: UnsupportedOperationException", "null", UnsupportedOperationException),
    ("object: UnsupportedOperationException", "{}", UnsupportedOperationException),
]


@pytest.mark.parametrize(("case", "element", "expected"), GET_AS_INT, ids=[row[0] for row in GET_AS_INT])
def test_get_as_int(case: str, element: str, expected: int | type) -> None:
    tree = gson.parse(element.encode())
    if isinstance(expected, int):
        assert gson.get_as_int(tree) == expected
    else:
        with pytest.raises(expected):
            gson.get_as_int(tree)


@pytest.mark.parametrize(
    ("case", "element", "expected"), GET_AS_BOOLEAN, ids=[row[0] for row in GET_AS_BOOLEAN]
)
def test_get_as_boolean(case: str, element: str, expected: bool | type) -> None:
    tree = gson.parse(element.encode())
    if isinstance(expected, bool):
        assert gson.get_as_boolean(tree) is expected
    else:
        with pytest.raises(expected):
            gson.get_as_boolean(tree)


@pytest.fixture
async def tb() -> AsyncIterator[InProcessEmulator]:
    settings = HubSettings(transport_api_timeout_s=TRANSPORT_API_TIMEOUT_S)
    async with InProcessEmulator(DEVICES, hub_settings=settings) as emulator:
        motor = emulator.hub.registry.by_name["motor_01"]
        motor.client_attributes.update({"fw": "1.0", "model": "m"})
        motor.shared_attributes.update({"speed": 3, "mode": "x"})
        yield emulator


async def gateway(tb: InProcessEmulator, *subscriptions: str) -> RawMqttClient:
    client = RawMqttClient(tb.host, tb.mqtt_port, version=V5)
    assert (await client.connect(GATEWAY_TOKEN)).reason_code == 0
    if subscriptions:
        await client.subscribe(*subscriptions)
    return client


ABSENT = object()


def attributes_request(**changes: Any) -> bytes:
    """{"id": 1, "device": "m", "client": true, "key": "a"} with ``changes`` (ABSENT drops a member)."""
    members = {"id": 1, "device": "m", "client": True, "key": "a", **changes}
    return orjson.dumps({name: value for name, value in members.items() if value is not ABSENT})


RUNTIME_EXCEPTIONS = [
    ("getDeviceName: getAsJsonObject of an array", CONNECT, b'["m"]'),
    ("getDeviceName: no device member, NullPointerException", CONNECT, b'{"type": "motor"}'),
    ("getDeviceName: JsonNull.getAsString", CONNECT, b'{"device": null}'),
    ("getDeviceName: JsonObject.getAsString", CONNECT, b'{"device": {}}'),
    ("getDeviceName: an array of two", CONNECT, b'{"device": ["a", "b"]}'),
    ("checkDeviceName: empty", CONNECT, b'{"device": ""}'),
    ("checkDeviceName: an array of one empty string", DISCONNECT, b'{"device": [""]}'),
    ("getDeviceType: JsonObject.getAsString", CONNECT, b'{"device": "m", "type": {}}'),
    ("attributes request: validateJsonObject", ATTRIBUTES_REQUEST, b"[1]"),
    ("attributes request: no id", ATTRIBUTES_REQUEST, attributes_request(id=ABSENT)),
    ("attributes request: id getAsInt of '5.7'", ATTRIBUTES_REQUEST, attributes_request(id="5.7")),
    ("attributes request: id getAsInt of true", ATTRIBUTES_REQUEST, attributes_request(id=True)),
    ("attributes request: no device", ATTRIBUTES_REQUEST, attributes_request(device=ABSENT)),
    ("attributes request: no client", ATTRIBUTES_REQUEST, attributes_request(client=ABSENT)),
    ("attributes request: client null", ATTRIBUTES_REQUEST, attributes_request(client=None)),
    ("attributes request: has(key) with null", ATTRIBUTES_REQUEST, attributes_request(key=None)),
    ("attributes request: neither key nor keys", ATTRIBUTES_REQUEST, attributes_request(key=ABSENT)),
    (
        "attributes request: keys getAsJsonArray of a string",
        ATTRIBUTES_REQUEST,
        attributes_request(key=ABSENT, keys="a"),
    ),
    ("attributes request: a null in keys", ATTRIBUTES_REQUEST, attributes_request(key=ABSENT, keys=[None])),
    ("rpc response: validateJsonObject", RPC, b'"x"'),
    ("rpc response: no device", RPC, b'{"id": 1, "data": {}}'),
    ("rpc response: id getAsInt of 'x'", RPC, b'{"device": "motor_01", "id": "x", "data": {}}'),
    ("rpc response: no data, null.toString()", RPC, b'{"device": "motor_01", "id": 1}'),
]


@pytest.mark.parametrize(
    ("case", "topic", "payload"), RUNTIME_EXCEPTIONS, ids=[row[0] for row in RUNTIME_EXCEPTIONS]
)
async def test_a_runtime_exception_is_puback_0x83_then_close(
    tb: InProcessEmulator, case: str, topic: str, payload: bytes
) -> None:
    """handleGatewayPublishMsg: catch (RuntimeException e) -> ack IMPLEMENTATION_SPECIFIC_ERROR, closeCtx."""
    devices_before = set(tb.hub.registry.by_name)
    async with await gateway(tb) as gw:
        assert await gw.publish(topic, payload) == 0x83
        await gw.wait_closed()
        assert gw.disconnect == codec.Disconnect(0x83)
    assert set(tb.hub.registry.by_name) == devices_before


CONNECTS = [
    ("getDeviceName: a number's literal", b'{"device": 5}', "5", "default"),
    ("getDeviceName: the literal as sent", b'{"device": 1.50, "type": "motor"}', "1.50", "motor"),
    ("getDeviceName: an array of one", b'{"device": ["m-arr"], "type": null}', "m-arr", "default"),
    ("getDeviceName: a boolean", b'{"device": true, "type": 7}', "true", "7"),
    ("getDeviceType: an array of one", b'{"device": "m-type", "type": ["motor"]}', "m-type", "motor"),
    ("checkDeviceName: a blank name is not empty", b'{"device": "x", "type": " t "}', "x", " t "),
]


@pytest.mark.parametrize(("case", "payload", "name", "type_"), CONNECTS, ids=[row[0] for row in CONNECTS])
async def test_connect_coerces_as_gson(
    tb: InProcessEmulator, case: str, payload: bytes, name: str, type_: str
) -> None:
    async with await gateway(tb) as gw:
        assert await gw.publish(CONNECT, payload) == 0
        assert tb.hub.registry.by_name[name].type == type_
        assert any(name in subs for subs in tb.hub.sub_sessions.values())
        assert await gw.publish(DISCONNECT, orjson.dumps({"device": [name]})) == 0
        assert not any(name in subs for subs in tb.hub.sub_sessions.values())


ATTRIBUTE_REQUESTS = [
    ('id getAsInt of "5", client "TRUE"', {"id": "5", "client": "TRUE", "key": "fw"}, {"value": "1.0"}),
    (
        'id 6.9 is 6, device ["motor_01"], client "yes" is false',
        {"id": 6.9, "device": ["motor_01"], "client": "yes", "keys": ["speed"]},
        {"id": 6, "value": 3},
    ),
    (
        "id 4294967301: its low 32 bits",
        {"id": 4294967301, "client": 1, "key": "speed"},
        {"id": 5, "value": 3},
    ),
    (
        "keys: each getAsString, an array of one included",
        {"client": False, "keys": ["speed", ["mode"], "nope"]},
        {"values": {"speed": 3, "mode": "x"}},
    ),
    ("keys: a HashSet, one key twice is one key", {"keys": ["fw", "fw"]}, {"value": "1.0"}),
    (
        "keys: no key is every client and shared attribute",
        {"keys": []},
        {"values": {"fw": "1.0", "model": "m", "speed": 3, "mode": "x"}},
    ),
    ("nothing found: neither value nor values", {"keys": ["nope"]}, {}),
    ("key: a number's literal", {"client": ["true"], "key": 5}, {}),
]


@pytest.mark.parametrize(
    ("case", "members", "response"), ATTRIBUTE_REQUESTS, ids=[row[0] for row in ATTRIBUTE_REQUESTS]
)
async def test_attribute_request_coerces_as_gson(
    tb: InProcessEmulator, case: str, members: dict[str, Any], response: dict[str, Any]
) -> None:
    """onDeviceAttributesRequestJson, and the answer of DeviceActorMessageProcessor as
    JsonConverter.getJsonObjectForGateway writes it."""
    request = {"id": 5, "device": "motor_01", "client": True, **members}
    async with await gateway(tb, "v1/gateway/attributes/response") as gw:
        assert await gw.publish(ATTRIBUTES_REQUEST, orjson.dumps(request)) == 0
        answer = await gw.next_message()
    assert orjson.loads(answer.payload) == {"id": 5, "device": "motor_01", **response}


RPC_RESPONSES = [
    ('id getAsInt of "0", data kept as JSON', {"id": "0", "data": {"ok": True}}, '{"ok":true}'),
    ("device an array of one, id 0.9 is 0", {"device": ["motor_01"], "id": 0.9, "data": "done"}, '"done"'),
    ("data null: JsonNull.toString()", {"id": [0], "data": None}, "null"),
]


@pytest.mark.parametrize(("case", "response", "kept"), RPC_RESPONSES, ids=[row[0] for row in RPC_RESPONSES])
async def test_rpc_response_coerces_as_gson(
    tb: InProcessEmulator, case: str, response: dict[str, Any], kept: str
) -> None:
    results: list[RpcResult] = []
    request = new_request(method="status", params={}, timeout_ms=5000)
    request.callbacks.append(results.append)
    async with await gateway(tb, RPC) as gw:
        assert await gw.publish(CONNECT, b'{"device": "motor_01"}') == 0
        tb.hub.submit_rpc(tb.hub.registry.by_name["motor_01"], request)
        assert orjson.loads((await gw.next_message()).payload)["data"]["id"] == 0
        assert await gw.publish(RPC, orjson.dumps({"device": "motor_01", **response})) == 0
        await tb.settled()  # the reply reaches the device actor through the core queue
    assert [(r.error, r.response) for r in results] == [(None, kept)]


NOT_CREATED = [
    ("connect: a blank name (DataValidator.validateString)", CONNECT, b'{"device": "   "}', 0x80),
    ("connect: a name with 0x00", CONNECT, b'{"device": "a\\u0000b"}', 0x80),
    ("connect: a name of 256 characters (@Length)", CONNECT, orjson.dumps({"device": "x" * 256}), 0x80),
    ("connect: an empty type makes no new profile", CONNECT, b'{"device": "new", "type": ""}', 0x80),
    ("attributes request: an empty name, 0x83", ATTRIBUTES_REQUEST, attributes_request(device=""), 0x83),
    ("rpc response: a blank name", RPC, b'{"device": " ", "id": 1, "data": {}}', 0x80),
    (
        "telemetry: a blank device key, the others' messages still go in",
        TELEMETRY,
        b'{" ": [{"a": 1}], "motor_01": [{"seen": 1}]}',
        0x80,
    ),
    ("attributes: an empty device key", "v1/gateway/attributes", b'{"": {"a": 1}}', 0x80),
]


@pytest.mark.parametrize(
    ("case", "topic", "payload", "code"), NOT_CREATED, ids=[row[0] for row in NOT_CREATED]
)
async def test_a_device_thingsboard_cannot_create_fails_when_the_transport_api_times_out(
    tb: InProcessEmulator, case: str, topic: str, payload: bytes, code: int
) -> None:
    """DefaultTransportApiService sends no answer for a DataValidationException; the transport's
    request fails at its timeout and processFailure acks; the session stays."""
    devices_before = set(tb.hub.registry.by_name)
    async with await gateway(tb) as gw:
        ack = asyncio.create_task(gw.publish(topic, payload))
        await asyncio.sleep(TRANSPORT_API_TIMEOUT_S / 5)
        assert not ack.done()  # no PUBACK before the transport API request times out
        assert await ack == code
        assert await gw.publish(CONNECT, b'{"device": "motor_02"}') == 0  # the session stays
    assert set(tb.hub.registry.by_name) - devices_before == set()
    if topic == TELEMETRY:
        await tb.settled()
        assert "seen" in tb.hub.registry.by_name["motor_01"].latest


async def test_names_validation_lets_through_are_created_and_an_existing_device_is_found(
    tb: InProcessEmulator,
) -> None:
    """An existing device is found by name before anything is validated (findOrCreateDevice)."""
    async with await gateway(tb) as gw:
        for connect in (
            {"device": "x" * 255},  # @Length: at most 255
            {"device": " padded ", "type": "motor"},  # validateString: not blank
            {"device": "motor_01", "type": ""},  # found: no profile "" needed
        ):
            assert await gw.publish(CONNECT, orjson.dumps(connect)) == 0
    registry = tb.hub.registry.by_name
    assert (registry["x" * 255].type, registry[" padded "].type, registry["motor_01"].type) == (
        "default",
        "motor",
        "motor",
    )
    assert "" not in tb.hub.registry.profiles
