"""ThingsBoard's JSON payload rules (JsonConverter): telemetry groups, attributes, attribute requests.

Bad shapes raise AdaptorError, which the transport turns into ThingsBoard's reaction (connection
closed on MQTT 3.1.1, PUBACK 0x99 on MQTT 5).
"""

from __future__ import annotations

import re
from typing import Any

import orjson

_LONG = re.compile(r"^[+-]?\d+$")
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


class AdaptorError(ValueError):
    """The payload does not have a shape ThingsBoard accepts on this topic."""


def parse_json(payload: bytes) -> Any:
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise AdaptorError(f"payload is not valid JSON: {exc}") from None


def _value(key: str, value: Any, cast: bool) -> Any:
    if value is None:
        raise AdaptorError(f"can't parse value null of key {key!r}")
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not _LONG_MIN <= value <= _LONG_MAX:
            # JsonConverter refuses big integers it cannot hold in a long unless casting to double
            raise AdaptorError(f"big integer value of key {key!r} is not supported")
        return value
    if isinstance(value, str) and cast:
        text = value.strip()
        if _LONG.match(text):
            as_int = int(text)
            if _LONG_MIN <= as_int <= _LONG_MAX:
                return as_int
        try:
            as_float = float(text)
        except ValueError:
            return value
        if text.lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity", "+infinity"):
            return value
        return as_float
    return value


def _values(obj: dict[str, Any], cast: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if not key:
            raise AdaptorError("empty telemetry/attribute key")
        out[key] = _value(key, value, cast)
    return out


def telemetry_groups(data: Any, server_ts_ms: int, *, cast: bool = True) -> list[tuple[int, dict[str, Any]]]:
    """``{k: v}``, ``{"ts", "values"}`` or an array of either -> [(ts ms, values)], one per ts group.

    The ts form needs both keys (JsonConverter.parseObject); other objects are plain key/values.
    """
    items = data if isinstance(data, list) else [data]
    groups: list[tuple[int, dict[str, Any]]] = []
    for item in items:
        if not isinstance(item, dict):
            raise AdaptorError(f"telemetry item is not a JSON object: {item!r}")
        if "ts" in item and "values" in item:
            ts = item["ts"]
            values = item["values"]
            if isinstance(ts, bool) or not isinstance(ts, int):
                raise AdaptorError(f"telemetry ts is not an integer: {ts!r}")
            if not isinstance(values, dict):
                raise AdaptorError("telemetry values is not a JSON object")
            groups.append((ts, _values(values, cast)))
        else:
            groups.append((server_ts_ms, _values(item, cast)))
    return groups


def attributes(data: Any, *, cast: bool = True) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise AdaptorError("attributes payload is not a JSON object")
    return _values(data, cast)


def key_set(value: Any) -> set[str] | None:
    """JsonMqttAdaptor.toStringSet: a comma-separated string of keys; absent means all keys."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise AdaptorError("attribute request keys must be a comma-separated string")
    return {k.strip() for k in value.split(",") if k.strip()}


def request_id(topic: str, prefix: str) -> int:
    suffix = topic[len(prefix) :]
    try:
        return int(suffix)
    except ValueError:
        raise AdaptorError(f"request id {suffix!r} in topic is not an integer") from None


def dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
