"""ThingsBoard's JsonConverter: telemetry groups and attributes from a Gson tree, branch by branch.

Follows thingsboard/thingsboard common/proto/src/main/java/org/thingsboard/server/common/adaptor/
JsonConverter.java @dfe65d5 (the same at v4.3.0.1): ``convertToTelemetryProto``,
``convertToGatewayTelemetry``, ``convertToAttributesProto``, ``parseProtoValues`` and
``buildNumericKeyValueProto``, with Gson's accessors (``gson.py``) and commons-lang3 3.18.0
``NumberUtils.isParsable``. The converters raise Gson's Java exceptions; the caller decides what
each means, as ThingsBoard's callers do: the device adaptor (JsonMqttAdaptor) turns
JsonSyntaxException and IllegalStateException into AdaptorError (:func:`adaptor_errors`) and lets
anything else escape, the gateway handler catches everything ("Failed to convert telemetry").

A value becomes: a bool; an int (LONG_V); a float (DOUBLE_V); a str (STRING_V); the JSON tree of an
object or array (JSON_V); a JSON null is skipped, the other keys kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from devstack.tb_emulator import gson
from devstack.tb_emulator.gson import (
    IllegalStateException,
    JavaRuntimeException,
    JsonSyntaxException,
    dumps,
)

__all__ = [
    "DEFAULT_JSON",
    "AdaptorError",
    "Group",
    "JsonSettings",
    "UncaughtRuntimeError",
    "adaptor_errors",
    "attributes",
    "dumps",
    "gateway_telemetry_groups",
    "is_blank",
    "java_length",
    "key_set",
    "parse_json",
    "request_id",
    "telemetry_by_ts",
    "telemetry_groups",
]

Group = tuple[int, dict[str, Any]]

_CAN_T_PARSE_VALUE = "Can't parse value: "
_BIG_NUMBER = "Big integer values are not supported!"
_MAX_DOUBLE_SCALE = 16  # buildNumericKeyValueProto: a larger scale is not a DOUBLE_V
# The emulator's own bound: toPlainString of 1e999999999 is a billion characters; ThingsBoard runs
# out of memory there (an Error, which both callers treat like an escaped RuntimeException).
_MAX_PLAIN_LENGTH = 1_000_000
_GATEWAY_METADATA = "metadata"
_ABSENT = object()


class AdaptorError(ValueError):
    """ThingsBoard's AdaptorException: the transport answers PUBACK 0x99 (MQTT 5, QoS 1) or closes the
    session (sendResponseForAdaptorErrorOrCloseContext)."""


class UncaughtRuntimeError(RuntimeError):
    """A RuntimeException the JSON adaptor does not catch (NumberFormatException, UnsupportedOperation,
    NullPointerException): it leaves MqttTransportHandler.processDevicePublish, Netty passes it to
    exceptionCaught, which closes the channel (MQTT 5: DISCONNECT 0x8B, SERVER_SHUTTING_DOWN)."""


class GatewayError(RuntimeError):
    """A RuntimeException out of a gateway handler: handleGatewayPublishMsg acks 0x83 and closes."""


class GatewayConversionError(RuntimeError):
    """A device's telemetry or attributes do not convert: AbstractGatewaySessionHandler.ackOrClose,
    MQTT 5: PUBACK 0x99 and the session stays; 3.1.1: the channel is closed, no PUBACK."""


class OutOfMemoryError(JavaRuntimeException):
    """The emulator's stand-in for the JVM running out of memory on a gigantic plain string."""


@dataclass(frozen=True, slots=True)
class JsonSettings:
    """JsonConverterConfig (thingsboard.yml ``transport.json``)."""

    type_cast_enabled: bool = True  # JSON_TYPE_CAST_ENABLED: numeric strings become numbers
    max_string_value_length: int = 0  # JSON_MAX_STRING_VALUE_LENGTH, in UTF-16 units; 0 = no check


DEFAULT_JSON = JsonSettings()


def parse_json(payload: bytes) -> Any:
    """JsonMqttAdaptor.validateJsonPayload: Gson's parse; malformed JSON is an AdaptorError."""
    try:
        return gson.parse(payload)
    except JsonSyntaxException as exc:
        raise AdaptorError(str(exc)) from None


@contextmanager
def adaptor_errors() -> Iterator[None]:
    """JsonMqttAdaptor.convertToPostTelemetry / convertToPostAttributes:
    ``catch (IllegalStateException | JsonSyntaxException ex) -> AdaptorException``; any other
    RuntimeException (a ``ts`` of "abc" or null) escapes the adaptor (thingsboard/thingsboard
    common/transport/mqtt/.../adaptors/JsonMqttAdaptor.java @dfe65d5)."""
    try:
        yield
    except (JsonSyntaxException, IllegalStateException) as exc:
        raise AdaptorError(str(exc)) from None
    except JavaRuntimeException as exc:
        raise UncaughtRuntimeError(f"{type(exc).__name__}: {exc}") from None


def telemetry_groups(data: Any, server_ts_ms: int, settings: JsonSettings = DEFAULT_JSON) -> list[Group]:
    """convertToTelemetryProto: an object, or an array of objects, each one ts group, in order.

    An object with both ``ts`` and ``values`` (whatever their values) is a group at that ts
    (``getAsLong``, see gson.get_as_long); any other object is the values, at the server's time.
    An empty array gives no group.
    """
    return _groups(data, server_ts_ms, settings, null_refused=False)


def telemetry_by_ts(
    data: Any, server_ts_ms: int, settings: JsonSettings = DEFAULT_JSON
) -> dict[int, dict[str, Any]]:
    """convertToTelemetry, the Map variant (TelemetryController's save, TbMsgTimeseriesNode): as
    :func:`telemetry_groups`, but a null value is refused (parseValues) and groups of one ts merge."""
    merged: dict[int, dict[str, Any]] = {}
    for ts, values in _groups(data, server_ts_ms, settings, null_refused=True):
        if values:
            merged.setdefault(ts, {}).update(values)
    return merged


def _groups(data: Any, server_ts_ms: int, settings: JsonSettings, *, null_refused: bool) -> list[Group]:
    if isinstance(data, dict):
        return [_group(data, server_ts_ms, settings, null_refused)]
    if not isinstance(data, list):
        raise JsonSyntaxException(_CAN_T_PARSE_VALUE + gson.to_string(data))
    groups: list[Group] = []
    for item in data:
        if not isinstance(item, dict):
            raise JsonSyntaxException(_CAN_T_PARSE_VALUE + gson.to_string(item))
        groups.append(_group(item, server_ts_ms, settings, null_refused))
    return groups


def gateway_telemetry_groups(
    entries: list[Any], server_ts_ms: int, settings: JsonSettings = DEFAULT_JSON
) -> list[Group]:
    """convertToGatewayTelemetry: one device's array of entries; each entry's ``metadata`` (the
    gateway's latency report) is removed and must be an object with non-null ``connector``,
    ``receivedTs`` and ``publishedTs``; the rest is a group as in :func:`telemetry_groups`.
    (The latency figures feed ThingsBoard's gateway metrics, which the emulator does not keep.)"""
    groups: list[Group] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise JsonSyntaxException(_CAN_T_PARSE_VALUE + gson.to_string(entry))
        metadata = entry.get(_GATEWAY_METADATA, _ABSENT)
        if metadata is not _ABSENT:
            _check_gateway_metadata(metadata)
            entry = {k: v for k, v in entry.items() if k != _GATEWAY_METADATA}
        groups.append(_group(entry, server_ts_ms, settings, False))
    return groups


def attributes(
    data: Any, settings: JsonSettings = DEFAULT_JSON, *, null_refused: bool = False
) -> dict[str, Any]:
    """convertToAttributesProto: a JSON object, its values converted as telemetry values are
    (``null_refused``: convertToAttributes, TelemetryController's save, where a null fails)."""
    if not isinstance(data, dict):
        raise JsonSyntaxException(_CAN_T_PARSE_VALUE + gson.to_string(data))
    return _values(data, settings, null_refused)


def _group(item: dict[str, Any], server_ts_ms: int, settings: JsonSettings, null_refused: bool) -> Group:
    """parseObject -> parseWithTs (ts read first, then values.getAsJsonObject) or parseWithoutTs."""
    if "ts" in item and "values" in item:
        ts = gson.get_as_long(item["ts"])
        return ts, _values(gson.get_as_json_object(item["values"]), settings, null_refused)
    return server_ts_ms, _values(item, settings, null_refused)


def _check_gateway_metadata(metadata: Any) -> None:
    """convertToGatewayTelemetry / getAndValidateMetadataElement."""
    if not isinstance(metadata, dict):
        raise JsonSyntaxException(f"Can't parse gateway metadata: {gson.to_string(metadata)}")
    for name, read in (
        ("connector", gson.get_as_string),
        ("receivedTs", gson.get_as_long),
        ("publishedTs", gson.get_as_long),
    ):
        element = metadata.get(name)
        if element is None:
            raise JsonSyntaxException(f"Can't parse gateway element in metadata: [{name}]")
        read(element)


def _values(obj: dict[str, Any], settings: JsonSettings, null_refused: bool) -> dict[str, Any]:
    """parseProtoValues (parseValues when ``null_refused``), in key order; the first key that fails
    fails the message."""
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, str):
            out[key] = _string_value(key, value, settings)
        elif isinstance(value, bool):
            out[key] = value
        elif isinstance(value, int):
            out[key] = value  # the parser's ints are integer literals within a long: LONG_V as they are
        elif isinstance(value, float):
            out[key] = _numeric(gson.literal(value), settings)
        elif value is not None:  # object or array: JSON_V (element.toString())
            out[key] = value
        elif null_refused:
            raise JsonSyntaxException(_CAN_T_PARSE_VALUE + "null")
        # else JSON null: neither a primitive nor an object/array, and not refused: the key is skipped
    return out


def _string_value(key: str, value: str, settings: JsonSettings) -> Any:
    limit = settings.max_string_value_length
    if limit > 0 and java_length(value) > limit:
        raise JsonSyntaxException(
            f"String value length [{java_length(value)}] for key [{key}] is greater than maximum "
            f"allowed [{limit}]"
        )
    if settings.type_cast_enabled and _is_parsable(value):
        try:
            return _numeric(value, settings)
        except JavaRuntimeException:  # catch (RuntimeException th): keep the string
            return value
    return value


def _numeric(text: str, settings: JsonSettings) -> int | float | str:
    """buildNumericKeyValueProto(text) with ``bd = new BigDecimal(text)``:

    - integral (``bd.stripTrailingZeros().scale() <= 0``) and not a "simple double" (a '.' and no
      exponent): LONG_V if it fits a long ("100", "1E2", "1.5e1" -> 15), else the plain digits as
      STRING_V with type cast on ("1e30" -> "1000000000000000000000000000000"), else refused;
    - otherwise ``bd.scale() <= 16``: DOUBLE_V ("1.0" -> 1.0, "21.50", "1.5e-3");
    - otherwise (more than 16 decimals: "0.12345678901234567", "1e-20"): the plain digits as
      STRING_V with type cast on, else refused ("Big integer values are not supported!").
    """
    decimal = Decimal(text)
    exponent = decimal.as_tuple().exponent
    assert isinstance(exponent, int)  # finite: a JSON number literal or a parsable string
    if _is_integral(decimal, exponent) and not _is_simple_double(text):
        # adjusted() is the power of ten of the first digit: below 19, int() is small and cheap
        if decimal.adjusted() < gson.LONG_DIGITS:
            number = int(decimal)
            if gson.LONG_MIN <= number <= gson.LONG_MAX:
                return number
        return _plain_or_refuse(decimal, exponent, settings)
    if -exponent <= _MAX_DOUBLE_SCALE:
        return float(decimal) if decimal else 0.0  # BigDecimal has no negative zero
    return _plain_or_refuse(decimal, exponent, settings)


def _is_integral(decimal: Decimal, exponent: int) -> bool:
    """``stripTrailingZeros().scale() <= 0``: no non-zero digit after the decimal point."""
    if exponent >= 0 or not decimal:
        return True
    digits = decimal.as_tuple().digits
    return all(d == 0 for d in digits[exponent:])


def _is_simple_double(text: str) -> bool:
    return "." in text and "e" not in text and "E" not in text


def _plain_or_refuse(decimal: Decimal, exponent: int, settings: JsonSettings) -> str:
    """STRING_V of ``bd.toPlainString()`` with type cast on; else "Big integer values are not supported!"."""
    if not settings.type_cast_enabled:
        raise JsonSyntaxException(_BIG_NUMBER)
    if max(decimal.adjusted(), -exponent) > _MAX_PLAIN_LENGTH:
        raise OutOfMemoryError(f"toPlainString of {decimal} would not fit the emulator's memory")
    return format(decimal if decimal else abs(decimal), "f")  # BigDecimal has no "-0"


def _is_parsable(text: str) -> bool:
    """NumberUtils.isParsable (commons-lang3 3.18.0): an optional '-', then decimal digits
    (Character.isDigit: any Unicode decimal digit of the Basic Multilingual Plane) with at most one
    '.', and not ending in '.'. So "-.5" and "007" are numbers; "+5", "1e5", " 5", "5." are not."""
    if not text or text[-1] == ".":
        return False
    body = text[1:] if text[0] == "-" else text
    if not body:
        return False
    dots = 0
    for ch in body:
        if ch == ".":
            dots += 1
            if dots > 1:
                return False
        elif not (ch.isdecimal() and ch <= "\uffff"):
            return False
    return True


# String.trim removes every character up to U+0020, and nothing else
_JAVA_TRIMMED = "".join(chr(c) for c in range(0x21))


def is_blank(text: str) -> bool:
    """StringUtils.isBlank: empty once String.trim has removed every character up to U+0020."""
    return not text.strip(_JAVA_TRIMMED)


def java_length(text: str) -> int:
    """String.length(): UTF-16 code units (a character beyond the BMP counts two)."""
    if text.isascii():  # the usual key or value, without a pass over its characters
        return len(text)
    return len(text) + sum(1 for ch in text if ch > "\uffff")


def key_set(body: dict[str, Any], name: str) -> set[str] | None:
    """JsonMqttAdaptor.toStringSet: ``getAsString().split(",")`` of the member, nothing trimmed (Java
    drops trailing empty parts only); absent means all keys. A null or an object is the adaptor's
    RuntimeException (caught there: AdaptorError); a number is its digits."""
    if name not in body:
        return None
    try:
        text = gson.get_as_string(body[name])
    except JavaRuntimeException as exc:
        raise AdaptorError(f"{name}: {type(exc).__name__}: {exc}") from None
    parts = text.split(",")
    while len(parts) > 1 and not parts[-1]:
        parts.pop()
    return set(parts)


def request_id(topic: str, prefix: str) -> int:
    """JsonMqttAdaptor.getRequestId (Integer.parseInt of the topic's tail) where its caller catches
    every RuntimeException: attribute requests and RPC responses."""
    suffix = topic[len(prefix) :]
    try:
        return gson.parse_long(suffix, bits=32)
    except gson.NumberFormatException:
        raise AdaptorError(f"request id {suffix!r} in topic is not an integer") from None
