"""JsonConverter as ThingsBoard runs it, branch by branch, and what the MQTT transport does with each.

Each row names the branch of thingsboard/thingsboard common/proto/.../adaptor/JsonConverter.java
@dfe65d5 (or the Gson accessor, google/gson @gson-parent-2.13.1) it pins. The expected values were
checked against those Java sources compiled and run (Gson 2.13.1, commons-lang3 3.18.0, JDK 17).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from cloud.mqtt import codec
from devstack.tb_emulator import convert, gson
from devstack.tb_emulator.convert import JsonSettings
from devstack.tb_emulator.gson import (
    IllegalStateException,
    JavaRuntimeException,
    JsonSyntaxException,
    NumberFormatException,
    UnsupportedOperationException,
)
from devstack.tb_emulator.harness import EmulatorProcess, InProcessEmulator
from devstack.tb_emulator.raw_client import RawMqttClient
from devstack.waiting import wait_until
from tests.emulator.conftest import DEVICES, GATEWAY_TOKEN

V3, V5 = codec.MQTT_3_1_1, codec.MQTT_5
SERVER_TS = 42
SKIP = object()  # the key is left out, the others kept
CAST_OFF = JsonSettings(type_cast_enabled=False)


def typed(value: Any) -> tuple[str, Any]:
    """A converted value with its KeyValueType, so 1 and 1.0 and "1" stay apart."""
    if isinstance(value, bool):
        return "BOOLEAN_V", value
    if isinstance(value, int):
        return "LONG_V", value
    if isinstance(value, float):
        return "DOUBLE_V", value
    if isinstance(value, str):
        return "STRING_V", value
    return "JSON_V", gson.to_string(value)


def L(n: int) -> tuple[str, Any]:  # noqa: N802 - the KeyValueType's initial
    return "LONG_V", n


def D(x: float) -> tuple[str, Any]:  # noqa: N802
    return "DOUBLE_V", x


def S(text: str) -> tuple[str, Any]:  # noqa: N802
    return "STRING_V", text


def J(text: str) -> tuple[str, Any]:  # noqa: N802
    return "JSON_V", text


# (branch, JSON value of key "k", expected with type cast on, expected with type cast off)
VALUES: list[tuple[str, str, Any, Any]] = [
    ("primitive boolean -> BOOLEAN_V", "true", ("BOOLEAN_V", True), ("BOOLEAN_V", True)),
    ("number, integral, fits a long -> LONG_V", "1700000000000", L(1700000000000), L(1700000000000)),
    ("number -0 -> LONG_V 0", "-0", L(0), L(0)),
    ("number with exponent, integral -> LONG_V", "1E2", L(100), L(100)),
    ("number 1.5e1: integral after stripTrailingZeros, not a simple double -> LONG_V", "1.5e1", L(15), L(15)),
    ("number 0e-5: zero strips to scale 0 -> LONG_V", "0e-5", L(0), L(0)),
    ("number long max -> LONG_V", "9223372036854775807", L(2**63 - 1), L(2**63 - 1)),
    (
        "number beyond long, type cast -> STRING_V toPlainString",
        "9223372036854775808",
        S("9223372036854775808"),
        JsonSyntaxException,
    ),
    ("number 1e30 -> STRING_V of its plain digits", "1e30", S("1" + "0" * 30), JsonSyntaxException),
    ("number -1e30 -> STRING_V", "-1e30", S("-1" + "0" * 30), JsonSyntaxException),
    ("simple double 1.0 (a '.', no exponent) -> DOUBLE_V", "1.0", D(1.0), D(1.0)),
    ("simple double -0.0 -> DOUBLE_V 0.0 (BigDecimal has no -0)", "-0.0", D(0.0), D(0.0)),
    ("simple double 21.50 -> DOUBLE_V", "21.50", D(21.5), D(21.5)),
    ("exponent, not integral, scale 4 -> DOUBLE_V", "1.5e-3", D(0.0015), D(0.0015)),
    ("scale 16 -> DOUBLE_V", "0.1234567890123456", D(0.1234567890123456), D(0.1234567890123456)),
    (
        "scale 17 -> STRING_V toPlainString",
        "0.12345678901234567",
        S("0.12345678901234567"),
        JsonSyntaxException,
    ),
    ("1e-20: scale 20 -> STRING_V plain", "1e-20", S("0.00000000000000000001"), JsonSyntaxException),
    (
        "1.00000000000000000: simple double, scale 17 -> STRING_V",
        "1.00000000000000000",
        S("1.00000000000000000"),
        JsonSyntaxException,
    ),
    (
        "DOUBLE_V rounds like BigDecimal.doubleValue",
        "9007199254740993.5",
        D(9007199254740994.0),
        D(9007199254740994.0),
    ),
    ("1e-320: scale 320 -> STRING_V plain", "1e-320", S("0." + "0" * 319 + "1"), JsonSyntaxException),
    ("DOUBLE_V beyond double range -> Infinity", "1" * 400 + ".5", D(float("inf")), D(float("inf"))),
    ("string, not parsable -> STRING_V", '"running"', S("running"), S("running")),
    ("string empty -> STRING_V", '""', S(""), S("")),
    ("string isParsable integral -> LONG_V", '"1700000000000"', L(1700000000000), S("1700000000000")),
    ("string with leading zeros -> LONG_V", '"007"', L(7), S("007")),
    ("string -.5 is parsable -> DOUBLE_V", '"-.5"', D(-0.5), S("-.5")),
    ("string .5 -> DOUBLE_V", '".5"', D(0.5), S(".5")),
    ("string 1.50 -> DOUBLE_V", '"1.50"', D(1.5), S("1.50")),
    ("string -0 -> LONG_V 0", '"-0"', L(0), S("-0")),
    ("string ending in '.' is not parsable", '"5."', S("5."), S("5.")),
    ("string '+5' is not parsable (only '-')", '"+5"', S("+5"), S("+5")),
    ("string '1e5' is not parsable (no exponent)", '"1e5"', S("1e5"), S("1e5")),
    ("string ' 5' is not parsable (no blanks)", '" 5"', S(" 5"), S(" 5")),
    ("string '1.2.3': two points", '"1.2.3"', S("1.2.3"), S("1.2.3")),
    ("string NaN stays a string", '"NaN"', S("NaN"), S("NaN")),
    (
        "string of Arabic-Indic digits: Character.isDigit -> LONG_V",
        '"\\u0661\\u0662"',
        L(12),
        S("\u0661\u0662"),
    ),
    (
        "string beyond long -> STRING_V plain digits",
        '"00099999999999999999999"',
        S("9" * 20),
        S("00099999999999999999999"),
    ),
    (
        "string with 17 decimals -> STRING_V",
        '"0.12345678901234567"',
        S("0.12345678901234567"),
        S("0.12345678901234567"),
    ),
    (
        "string -0.000...0 (20 decimals) -> STRING_V without the sign",
        '"-0.' + "0" * 20 + '"',
        S("0." + "0" * 20),
        S("-0." + "0" * 20),
    ),
    ("JSON null: neither primitive nor object/array -> key skipped", "null", SKIP, SKIP),
    (
        "object -> JSON_V element.toString()",
        '{"a": 1.50, "b": [1, 2.0e3]}',
        J('{"a":1.50,"b":[1,2.0e3]}'),
        J('{"a":1.50,"b":[1,2.0e3]}'),
    ),
    ("empty object -> JSON_V", "{}", J("{}"), J("{}")),
    ("array -> JSON_V", "[null, true]", J("[null,true]"), J("[null,true]")),
    ("lenient literal NaN is a string primitive", "NaN", S("NaN"), S("NaN")),
    ("lenient literal -Infinity is a string primitive", "-Infinity", S("-Infinity"), S("-Infinity")),
]


def _convert_value(value_json: str, settings: JsonSettings) -> Any:
    payload = ('{"k": ' + value_json + ', "other": 1}').encode()
    [(ts, values)] = convert.telemetry_groups(gson.parse(payload), SERVER_TS, settings)
    assert ts == SERVER_TS
    assert values.pop("other") == 1  # the other keys survive a skipped one
    attrs = convert.attributes(gson.parse(payload), settings)
    attrs.pop("other")
    assert attrs == values  # attributes convert their values as telemetry does
    return typed(values["k"]) if "k" in values else SKIP


@pytest.mark.parametrize(("branch", "value", "cast_on", "cast_off"), VALUES, ids=[row[0] for row in VALUES])
def test_parse_proto_values(branch: str, value: str, cast_on: Any, cast_off: Any) -> None:
    for settings, expected in ((JsonSettings(), cast_on), (CAST_OFF, cast_off)):
        if isinstance(expected, type):
            with pytest.raises(expected):
                _convert_value(value, settings)
        else:
            assert _convert_value(value, settings) == expected


# (what Gson's getAsLong does with it, ts JSON, the ts or the Java exception)
TS: list[tuple[str, str, int | type[JavaRuntimeException]]] = [
    ("number: Long.parseLong", "1700000000000", 1700000000000),
    ("number with exponent: BigDecimal.longValue", "1.7e12", 1700000000000),
    ("fraction truncated toward zero", "1700000000000.9", 1700000000000),
    ("negative fraction truncated toward zero", "-1.5", -1),
    ("beyond 64 bits: the low 64 bits", "1e19", 10**19 - 2**64),
    ("integer literal beyond 64 bits: the low 64 bits", "99999999999999999999", 99999999999999999999 % 2**64),
    ("NumberLimits: scale of 10,000 or more", "1e10000", NumberFormatException),
    ("numeric string: Long.parseLong", '"1700000000000"', 1700000000000),
    ("string with a sign", '"+5"', 5),
    ("string with leading zeros", '"' + "0" * 30 + '5"', 5),
    ("string of Unicode digits (Character.digit)", '"\\u0661"', 1),
    ("string with an exponent", '"17e11"', NumberFormatException),
    ("string with a fraction", '"1700000000000.5"', NumberFormatException),
    ("string beyond long", '"9223372036854775808"', NumberFormatException),
    ("string not a number", '"abc"', NumberFormatException),
    ("empty string", '""', NumberFormatException),
    ("boolean: Long.parseLong('true')", "true", NumberFormatException),
    ("array of one: its element", '["5"]', 5),
    ("nested array of one", "[[7]]", 7),
    ("empty array: IllegalStateException", "[]", IllegalStateException),
    ("array of two: IllegalStateException", "[1, 2]", IllegalStateException),
    ("null: UnsupportedOperationException", "null", UnsupportedOperationException),
    ("object: UnsupportedOperationException", "{}", UnsupportedOperationException),
]


@pytest.mark.parametrize(("case", "ts", "expected"), TS, ids=[row[0] for row in TS])
def test_parse_with_ts_reads_ts_with_get_as_long(case: str, ts: str, expected: int | type) -> None:
    payload = ('{"ts": ' + ts + ', "values": {"a": 1}}').encode()
    if isinstance(expected, int):
        assert convert.telemetry_groups(gson.parse(payload), SERVER_TS) == [(expected, {"a": 1})]
        return
    with pytest.raises(expected):
        convert.telemetry_groups(gson.parse(payload), SERVER_TS)
    # JsonMqttAdaptor catches IllegalStateException and JsonSyntaxException only
    adaptor = convert.AdaptorError if expected is IllegalStateException else convert.UncaughtRuntimeError
    with pytest.raises(adaptor), convert.adaptor_errors():
        convert.telemetry_groups(gson.parse(payload), SERVER_TS)


# (branch, payload, the groups or the Java exception)
SHAPES: list[tuple[str, str, list[tuple[int, dict[str, Any]]] | type[JavaRuntimeException]]] = [
    ("object without ts/values: the values at the server's ts", '{"a": 1}', [(SERVER_TS, {"a": 1})]),
    ("ts and values: one group at ts", '{"ts": 5, "values": {"a": 1}}', [(5, {"a": 1})]),
    ("other keys beside ts and values are ignored", '{"ts": 5, "values": {"a": 1}, "x": 2}', [(5, {"a": 1})]),
    ("ts without values: plain keys, ts among them", '{"ts": 5, "a": 1}', [(SERVER_TS, {"ts": 5, "a": 1})]),
    (
        "values without ts: a plain key holding JSON",
        '{"values": {"a": 1}}',
        [(SERVER_TS, {"values": {"a": 1}})],
    ),
    ("empty object: one empty group", "{}", [(SERVER_TS, {})]),
    ("empty values: one empty group", '{"ts": 5, "values": {}}', [(5, {})]),
    ("all values null: one empty group", '{"a": null}', [(SERVER_TS, {})]),
    (
        "array of groups, in order, one per element",
        '[{"ts": 1, "values": {"a": 1}}, {"b": 2}, {"ts": 1, "values": {"c": 3}}]',
        [(1, {"a": 1}), (SERVER_TS, {"b": 2}), (1, {"c": 3})],
    ),
    ("empty array: no group", "[]", []),
    ("key may be empty (the DAO refuses it later, not the transport)", '{"": 1}', [(SERVER_TS, {"": 1})]),
    ("duplicate keys: the last value", '{"a": 1, "a": 2}', [(SERVER_TS, {"a": 2})]),
    ("values not an object: getAsJsonObject", '{"ts": 5, "values": 7}', IllegalStateException),
    ("values null: getAsJsonObject", '{"ts": 5, "values": null}', IllegalStateException),
    ("ts is read before values", '{"ts": "abc", "values": 7}', NumberFormatException),
    ("array element not an object", '[{"a": 1}, 5]', JsonSyntaxException),
    (
        "elements convert in order: the first failure wins",
        '[5, {"ts": "abc", "values": {}}]',
        JsonSyntaxException,
    ),
    ("a primitive payload", "5", JsonSyntaxException),
    ("a string payload", '"a string"', JsonSyntaxException),
    ("null payload", "null", JsonSyntaxException),
    ("empty payload is Gson's JsonNull", "", JsonSyntaxException),
]


@pytest.mark.parametrize(("branch", "payload", "expected"), SHAPES, ids=[row[0] for row in SHAPES])
def test_convert_to_telemetry_proto(branch: str, payload: str, expected: Any) -> None:
    if isinstance(expected, list):
        assert convert.telemetry_groups(gson.parse(payload.encode()), SERVER_TS) == expected
    else:
        with pytest.raises(expected):
            convert.telemetry_groups(gson.parse(payload.encode()), SERVER_TS)


@pytest.mark.parametrize(
    ("branch", "payload", "expected"),
    [
        ("an object", '{"fw": "1.0", "n": "5", "x": null}', {"fw": 1.0, "n": 5}),
        ("ts/values are plain keys for attributes", '{"ts": 1, "values": {}}', {"ts": 1, "values": {}}),
        ("an array is refused", "[{}]", JsonSyntaxException),
        ("a string is refused", '"x"', JsonSyntaxException),
    ],
)
def test_convert_to_attributes_proto(branch: str, payload: str, expected: Any) -> None:
    if isinstance(expected, dict):
        assert convert.attributes(gson.parse(payload.encode())) == expected
    else:
        with pytest.raises(expected):
            convert.attributes(gson.parse(payload.encode()))


GOOD_METADATA = '{"connector": "MQTT", "receivedTs": 1, "publishedTs": 2}'


@pytest.mark.parametrize(
    ("branch", "entries", "expected"),
    [
        (
            "entries as device telemetry",
            '[{"ts": 5, "values": {"a": 1}}, {"b": null}]',
            [(5, {"a": 1}), (SERVER_TS, {})],
        ),
        (
            "metadata removed from a ts entry",
            '[{"ts": 5, "values": {"a": 1}, "metadata": ' + GOOD_METADATA + "}]",
            [(5, {"a": 1})],
        ),
        (
            "metadata removed from a plain entry too",
            '[{"a": 1, "metadata": ' + GOOD_METADATA + "}]",
            [(SERVER_TS, {"a": 1})],
        ),
        (
            "metadata inside values is a JSON value",
            '[{"ts": 5, "values": {"metadata": {}}}]',
            [(5, {"metadata": {}})],
        ),
        (
            "metadata ts as numeric strings (getAsLong)",
            '[{"a": 1, "metadata": {"connector": 7, "receivedTs": "1", "publishedTs": 2.5}}]',
            [(SERVER_TS, {"a": 1})],
        ),
        ("metadata not an object", '[{"a": 1, "metadata": 5}]', JsonSyntaxException),
        ("metadata null", '[{"a": 1, "metadata": null}]', JsonSyntaxException),
        (
            "metadata without publishedTs",
            '[{"a": 1, "metadata": {"connector": "c", "receivedTs": 1}}]',
            JsonSyntaxException,
        ),
        (
            "metadata connector an object",
            '[{"a": 1, "metadata": {"connector": {}, "receivedTs": 1, "publishedTs": 2}}]',
            UnsupportedOperationException,
        ),
        (
            "metadata receivedTs not a number",
            '[{"a": 1, "metadata": {"connector": "c", "receivedTs": "x", "publishedTs": 2}}]',
            NumberFormatException,
        ),
        ("an entry that is not an object", "[1]", JsonSyntaxException),
    ],
)
def test_convert_to_gateway_telemetry(branch: str, entries: str, expected: Any) -> None:
    tree = gson.parse(entries.encode())
    if isinstance(expected, list):
        assert convert.gateway_telemetry_groups(tree, SERVER_TS) == expected
    else:
        with pytest.raises(expected):
            convert.gateway_telemetry_groups(tree, SERVER_TS)


@pytest.mark.parametrize(
    ("value", "limit", "refused"),
    [
        ('"abc"', 3, False),
        ('"abcd"', 3, True),
        ('"\\ud83d\\ude00"', 2, False),  # one code point, two UTF-16 units: String.length() is 2
        ('"\\ud83d\\ude00"', 1, True),
        ('"12345"', 3, True),  # the length is checked before the numeric cast
    ],
)
def test_max_string_value_length_counts_utf16_units(value: str, limit: int, refused: bool) -> None:
    payload = ('{"k": ' + value + "}").encode()
    settings = JsonSettings(max_string_value_length=limit)
    if refused:
        with pytest.raises(JsonSyntaxException):
            convert.telemetry_groups(gson.parse(payload), SERVER_TS, settings)
    else:
        convert.telemetry_groups(gson.parse(payload), SERVER_TS, settings)


# (what Gson's JsonParser.parseString does, payload, the tree or JsonSyntaxException); checked
# against Gson 2.13.1 run on the same payloads, with ~50,000 generated ones (all alike but the lone
# surrogate, which a Java String keeps and the emulator replaces as Java's encoder later would)
PARSE: list[tuple[str, bytes, Any]] = [
    ("an empty document is JsonNull", b" \n", None),
    ("a document of comments only is JsonNull", b"// nothing\n/* at all */", None),
    ("invalid UTF-8 is replaced (Netty's toString), not refused", b'{"k": "\xff"}', {"k": "\ufffd"}),
    ("a lone surrogate is what String.getBytes writes", b'"\\ud800x"', "?x"),
    ("a leading byte order mark is skipped", b"\xef\xbb\xbf{}", {}),
    ("NaN is an unquoted string", b"[NaN, -Infinity]", ["NaN", "-Infinity"]),
    ("unquoted names and values, a leading zero makes a string", b"{a: 01, b: x.y}", {"a": "01", "b": "x.y"}),
    ("single quotes", b"{'a': 'it\\'s'}", {"a": "it's"}),
    ("= and => after a name, ; between members", b'{"a" = 1; "b" => 2}', {"a": 1, "b": 2}),
    ("an omitted array element is null", b"[1,,2,]", [1, None, 2, None]),
    ("keywords in any case", b"[TRUE, False, nULL, trues]", [True, False, None, "trues"]),
    ("comments inside", b'{"a": 1 /* c */, # c\n "b": 2 // c\n}', {"a": 1, "b": 2}),
    ("the anti-XSSI prefix", b')]}\'\n{"a": 1}', {"a": 1}),
    ("-0 keeps its literal", b"-0", gson.JsonNumber("-0")),
    ("a number of 1,024 characters is a string", b"1" * 1024, "1" * 1024),
    ("null, then anything", b"null and more", None),
    ("nesting up to 255", b"[" * 255 + b"]" * 255, "deep"),
    ("nesting beyond 255", b"[" * 256 + b"]" * 256, JsonSyntaxException),
    ("more after the document", b'{"a": 1} x', JsonSyntaxException),
    ("not even a comment after it (checked with strictness restored)", b"{} // c", JsonSyntaxException),
    ("a trailing comma in an object", b'{"a": 1,}', JsonSyntaxException),
    ("an invalid escape", b'"\\x"', JsonSyntaxException),
]


@pytest.mark.parametrize(("case", "payload", "expected"), PARSE, ids=[row[0] for row in PARSE])
def test_gson_parse(case: str, payload: bytes, expected: Any) -> None:
    if expected is JsonSyntaxException:
        with pytest.raises(JsonSyntaxException):
            gson.parse(payload)
        return
    tree = gson.parse(payload)
    if expected == "deep":
        for _ in range(254):
            [tree] = tree
        assert tree == []
    elif isinstance(expected, gson.JsonNumber):
        assert (type(tree), tree.literal) == (gson.JsonNumber, expected.literal)
    else:
        assert tree == expected


def test_gson_to_string_keeps_literals_and_escapes_line_separators() -> None:
    assert gson.to_string(gson.parse(b'{"a": 1.50, "b": "\\u2028"}')) == '{"a":1.50,"b":"\\u2028"}'


# ----------------------------------------------------------------------------- on the wire


async def connected(tb: InProcessEmulator, token: str, version: int) -> RawMqttClient:
    client = RawMqttClient(tb.host, tb.mqtt_port, version=version)
    assert (await client.connect(token)).reason_code == 0
    return client


@pytest.mark.parametrize("version", [V3, V5])
async def test_device_telemetry_that_thingsboard_accepts(tb: InProcessEmulator, version: int) -> None:
    async with await connected(tb, "sensor-token", version) as client:
        for payload in (
            b'{"ts": 1700000000000.9, "values": {"frac": 1}}',
            b'{"ts": "1700000000001", "values": {"str": 2}}',
            b'{"ts": 1.700000000002e12, "values": {"exp": 3, "gone": null}}',
            b'{"alone": null}',
            b"{lenient: 'json', n = 01}",  # Gson's lenient reader: unquoted, single-quoted, '='
        ):
            assert await client.publish("v1/devices/me/telemetry", payload) == 0
        assert await client.publish("v1/devices/me/attributes", b'{"fw": "2.0", "drop": null}') == 0
    await tb.settled()
    sensor = tb.hub.registry.by_name["sensor"]
    assert sensor.latest["frac"] == (1700000000000, 1)
    assert sensor.latest["str"] == (1700000000001, 2)
    assert sensor.latest["exp"] == (1700000000002, 3)
    assert "gone" not in sensor.latest
    assert (sensor.latest["lenient"][1], sensor.latest["n"][1]) == ("json", 1)  # "01" is parsable
    assert "alone" not in sensor.latest
    assert sensor.client_attributes["fw"] == 2.0
    assert "drop" not in sensor.client_attributes


@pytest.mark.parametrize(
    "payload",
    [
        b'{"ts": "abc", "values": {"a": 1}}',  # NumberFormatException
        b'{"ts": null, "values": {"a": 1}}',  # UnsupportedOperationException
        b'{"ts": {}, "values": {"a": 1}}',
    ],
)
@pytest.mark.parametrize("version", [V3, V5])
async def test_ts_that_escapes_the_adaptor_closes_the_session(
    tb: InProcessEmulator, payload: bytes, version: int
) -> None:
    """MqttTransportHandler.exceptionCaught: closeCtx(SERVER_SHUTTING_DOWN), even at MQTT 5 QoS 1."""
    async with await connected(tb, "sensor-token", version) as client:
        with pytest.raises(ConnectionError):
            await client.publish("v1/devices/me/telemetry", payload)
        await client.wait_closed()
        assert client.disconnect == (codec.Disconnect(0x8B) if version == V5 else None)


async def test_empty_telemetry_array_gets_no_puback(tb: InProcessEmulator) -> None:
    """DefaultTransportService: a MsgPackCallback for zero messages never completes."""
    async with await connected(tb, "sensor-token", V5) as client:
        with pytest.raises(TimeoutError):
            await client.publish("v1/devices/me/telemetry", b"[]", timeout_s=0.5)
        assert await client.publish("v1/devices/me/telemetry", b'{"after": 1}') == 0


async def test_gateway_telemetry_as_thingsboard_converts_it(tb: InProcessEmulator) -> None:
    async with await connected(tb, GATEWAY_TOKEN, V5) as gw:
        body = (
            b'{"motor_01": [{"ts": 1700000000000.5, "values": {"a": 1, "n": null},'
            b' "metadata": {"connector": "MQTT", "receivedTs": 1, "publishedTs": 2}}],'
            b' "motor_02": {"not": "an array"}}'
        )
        assert await gw.publish("v1/gateway/telemetry", body) == 0
        assert await gw.publish("v1/gateway/attributes", b'{"motor_01": {"fw": "3"}, "motor_02": 5}') == 0
    await tb.settled()
    motor = tb.hub.registry.by_name["motor_01"]
    assert motor.latest["a"] == (1700000000000, 1)
    assert "n" not in motor.latest
    assert "metadata" not in motor.latest
    assert motor.client_attributes["fw"] == 3
    assert tb.hub.stats["gateway_telemetry_skipped"] == 1
    assert tb.hub.stats["gateway_attributes_skipped"] == 1


@pytest.mark.parametrize("version", [V3, V5])
async def test_gateway_data_that_does_not_convert_is_ack_or_close(
    tb: InProcessEmulator, version: int
) -> None:
    """ackOrClose: MQTT 5 gets PUBACK 0x99 and keeps the session, 3.1.1 is closed without a word;
    the other devices of the message are still processed."""
    body = b'{"motor_01": [{"ts": "abc", "values": {}}], "motor_02": [{"ok": 1}]}'
    async with await connected(tb, GATEWAY_TOKEN, version) as gw:
        if version == V5:
            assert await gw.publish("v1/gateway/telemetry", body) == 0x99
            assert await gw.publish("v1/gateway/attributes", b'{"motor_01": {"k": "' + b"x" * 3 + b'"}}') == 0
        else:
            with pytest.raises(ConnectionError):
                await gw.publish("v1/gateway/telemetry", body)
            await gw.wait_closed()
            assert gw.disconnect is None
    await tb.settled()
    assert tb.hub.registry.by_name["motor_02"].latest["ok"][1] == 1


async def test_json_values_keep_their_number_literals_over_http(tb: InProcessEmulator) -> None:
    """A JSON_V value is element.toString(): Gson writes each number as it arrived."""
    async with await connected(tb, "sensor-token", V3) as client:
        assert await client.publish("v1/devices/me/telemetry", b'{"nested": {"x": 1.50, "y": 1E2}}') == 0
    await tb.settled()
    async with httpx.AsyncClient(base_url=tb.http_url) as http:
        answer = await http.get("/api/devices/sensor/telemetry")
    assert answer.status_code == 200
    assert '"nested":{"ts":' in answer.text
    assert '"value":{"x":1.50,"y":1E2}' in answer.text


async def test_json_settings_from_the_command_line() -> None:
    """--json-max-string-value-length / --no-json-type-cast-enabled: JsonConverterConfig's two settings."""
    args = ("--json-max-string-value-length", "4", "--no-json-type-cast-enabled")
    with EmulatorProcess(DEVICES, extra_args=args) as tb:
        async with RawMqttClient(tb.host, tb.mqtt_port, version=V5) as client:
            assert (await client.connect("sensor-token")).reason_code == 0
            assert await client.publish("v1/devices/me/telemetry", b'{"k": "12345"}') == 0x99
            assert await client.publish("v1/devices/me/telemetry", b'{"k": "1234"}') == 0
        wait_until(lambda: "k" in tb.latest_telemetry("sensor"))
        assert tb.latest_telemetry("sensor")["k"] == "1234"  # no type cast: stays a string
