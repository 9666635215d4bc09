"""The save nodes read the message data as ThingsBoard's do: JsonConverter again, on the data text.

thingsboard/thingsboard rule-engine/rule-engine-components/.../telemetry/TbMsgTimeseriesNode.java
and TbMsgAttributesNode.java @dfe65d5 (the same onMsg at v4.3.0.1) convert ``msg.getData()`` with
``JsonConverter.convertToTelemetry(JsonParser.parseString(data), ts)`` /
``convertToAttributes(...)``; what onMsg throws, RuleNodeActorMessageProcessor tells as Failure; the
telemetry service's KvUtils.validate refuses blank and over-255 keys. The messages come from a
device over MQTT (what the transport makes of them is what ThingsBoard's DefaultTransportService
writes: JsonUtils.getJsonObject, Gson's toJson) or straight into the rule engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from devstack.tb_emulator.harness import InProcessEmulator
from devstack.tb_emulator.raw_client import RawMqttClient
from devstack.tb_emulator.rule_engine import MsgType, TbMsg
from tests.emulator.conftest import DEVICES

SENSOR_TOKEN = "sensor-token"
MSG_TS = 7_000


@pytest.fixture
async def tb() -> AsyncIterator[InProcessEmulator]:
    async with InProcessEmulator(DEVICES) as emulator:
        yield emulator


async def push(tb: InProcessEmulator, type_: str, data: str, **metadata: str) -> bool:
    """One message into the shipped chain (its type switch leads to the save nodes); True when the
    pass ended in Success, False when a node's Failure ended it."""
    sensor = tb.hub.registry.by_name["sensor"]
    engine = tb.hub.root_chain
    failures = engine.failures
    meta = {"deviceName": "sensor", "deviceType": sensor.type, "ts": str(MSG_TS), **metadata}
    tb.hub.push_to_rule_engine(TbMsg(type_, sensor, data, meta))
    await tb.settled()
    return engine.failures == failures


def saved(tb: InProcessEmulator) -> dict[str, tuple[int, Any]]:
    return dict(tb.hub.registry.by_name["sensor"].latest)


TIMESERIES = [
    ("parseWithoutTs: the values at the metadata ts", '{"a": 1}', {}, {"a": (MSG_TS, 1)}),
    (
        "parseWithTs: ts and values present, saved at its own ts",
        '{"ts": 5, "values": {"b": 2}}',
        {},
        {"b": (5, 2)},
    ),
    (
        "an array: a group per element",
        '[{"a": 1}, {"ts": 5, "values": {"b": 2}}]',
        {},
        {"a": (MSG_TS, 1), "b": (5, 2)},
    ),
    ("ts getAsLong of a numeric string", '{"ts": "5", "values": {"c": 3}}', {}, {"c": (5, 3)}),
    ("type cast: a numeric string is a number", '{"d": "21.50"}', {}, {"d": (MSG_TS, 21.5)}),
    (
        "more than 16 decimals: plain digits, a string",
        '{"e": 0.12345678901234567}',
        {},
        {"e": (MSG_TS, "0.12345678901234567")},
    ),
    ("getMetaDataTs: a ts Long.parseLong refuses is the message's time", '{"f": 1}', {"ts": "abc"}, None),
    ("TTL by Long.parseLong, a sign included", '{"g": 1}', {"TTL": "+5"}, {"g": (MSG_TS, 1)}),
    ("parseValues: a null value fails the message", '{"a": 1, "n": null}', {}, "Failure"),
    ("parseWithTs: values not an object, getAsJsonObject", '{"ts": 5, "values": 7}', {}, "Failure"),
    ("parseWithTs: ts getAsLong refuses 'abc'", '{"ts": "abc", "values": {"a": 1}}', {}, "Failure"),
    ("convertToTelemetry: not an object or array", '"text"', {}, "Failure"),
    ("convertToTelemetry: an array element not an object", '[{"a": 1}, 2]', {}, "Failure"),
    ("JsonParser.parseString: malformed", '{"a":', {}, "Failure"),
    ("Msg body is empty", "{}", {}, "Failure"),
    ("TTL Long.parseLong refuses", '{"a": 1}', {"TTL": "5s"}, "Failure"),
    ("KvUtils.validate: a blank key", '{" ": 1}', {}, "Failure"),
    ("KvUtils.validate: a key longer than 255", '{"' + "k" * 256 + '": 1}', {}, "Failure"),
]


@pytest.mark.parametrize(("case", "data", "metadata", "expected"), TIMESERIES, ids=[r[0] for r in TIMESERIES])
async def test_save_timeseries_converts_the_data(
    tb: InProcessEmulator, case: str, data: str, metadata: dict[str, str], expected: Any
) -> None:
    succeeded = await push(tb, MsgType.POST_TELEMETRY_REQUEST, data, **metadata)
    if expected == "Failure":
        assert not succeeded
        assert saved(tb) == {}
        return
    assert succeeded
    if expected is None:  # the emulator's messages have no time of their own: now
        [(ts, value)] = saved(tb).values()
        assert (ts > MSG_TS, value) == (True, 1)
        return
    assert saved(tb) == expected


ATTRIBUTES = [
    ("convertToAttributes: type cast", '{"fw": "5", "model": "x"}', {"fw": 5, "model": "x"}),
    ("no attribute: Success, nothing saved", "{}", {}),
    ("parseValues: a null value fails the message", '{"fw": "1", "n": null}', "Failure"),
    ("getAsJsonObject: an array", '[{"fw": 1}]', "Failure"),
    ("KvUtils.validate: an empty key", '{"": 1}', "Failure"),
]


@pytest.mark.parametrize(("case", "data", "expected"), ATTRIBUTES, ids=[r[0] for r in ATTRIBUTES])
async def test_save_attributes_converts_the_data(
    tb: InProcessEmulator, case: str, data: str, expected: Any
) -> None:
    succeeded = await push(tb, MsgType.POST_ATTRIBUTES_REQUEST, data, notifyDevice="false")
    client_attributes = tb.hub.registry.by_name["sensor"].client_attributes
    if expected == "Failure":
        assert not succeeded
        assert client_attributes == {}
        return
    assert succeeded
    assert client_attributes == expected


async def send_telemetry(tb: InProcessEmulator, payload: bytes) -> None:
    async with RawMqttClient(tb.host, tb.mqtt_port) as client:
        assert (await client.connect(SENSOR_TOKEN)).reason_code == 0
        assert await client.publish("v1/devices/me/telemetry", payload) == 0  # the transport accepts it
    await tb.settled()


async def test_values_named_ts_and_values_are_reshaped_by_the_save_node(tb: InProcessEmulator) -> None:
    """The transport stores group ts 1000 with keys "ts" (LONG) and "values" (JSON); the message's data
    is then {"ts":2000,"values":{"a":1}}, which the node reads as a group of its own."""
    await send_telemetry(tb, b'{"ts": 1000, "values": {"ts": 2000, "values": {"a": 1}}}')
    assert saved(tb) == {"a": (2000, 1)}


async def test_a_group_the_save_node_cannot_read_is_failure_after_the_transport_accepted_it(
    tb: InProcessEmulator,
) -> None:
    failures = tb.hub.root_chain.failures
    await send_telemetry(tb, b'{"ts": 1000, "values": {"ts": "abc", "values": 5}}')
    assert saved(tb) == {}
    assert tb.hub.root_chain.failures > failures


async def test_a_double_is_read_back_from_doubles_tostring(tb: InProcessEmulator) -> None:
    """JsonUtils writes a DOUBLE_V as Double.toString: 1e-16 becomes "1.0E-16", scale 17, so the node
    stores the plain digits as a string; 100000000000000000000.0 becomes "1.0E20", an integer
    beyond a long: a string too. 21.5 stays a double."""
    await send_telemetry(tb, b'{"v": 1e-16, "big": 100000000000000000000.0, "x": 21.5}')
    assert {key: value for key, (_, value) in saved(tb).items()} == {
        "v": "0.00000000000000010",
        "big": "100000000000000000000",
        "x": 21.5,
    }
