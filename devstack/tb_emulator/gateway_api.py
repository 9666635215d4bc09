"""The gateway API on ``v1/gateway/*`` (AbstractGatewaySessionHandler) for devices marked as gateway.

Per-device messages for a name not connected yet connect it implicitly (type "default"), and a
device seen for the first time is created, as ThingsBoard does. Invalid JSON is an AdaptorError;
a valid JSON of the wrong shape is ThingsBoard's RuntimeException path: PUBACK 0x83, then close.
A device's telemetry or attributes that do not convert are "Failed to convert" (ackOrClose).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devstack.tb_emulator import convert, gson, topics
from devstack.tb_emulator.devices import DEFAULT_DEVICE_TYPE

if TYPE_CHECKING:
    from devstack.tb_emulator.session import MqttSession

ACCEPTED = 0x00
NO_ACK = -1  # ThingsBoard sends no PUBACK at all
IMPLEMENTATION_SPECIFIC_ERROR = 0x83
TOPIC_NAME_INVALID = 0x90


class GatewayError(RuntimeError):
    """Valid JSON, wrong shape: ThingsBoard acks 0x83 and closes the gateway session."""


class GatewayConversionError(RuntimeError):
    """A device's telemetry or attributes do not convert: AbstractGatewaySessionHandler.ackOrClose,
    MQTT 5: PUBACK 0x99 and the session stays; 3.1.1: the channel is closed, no PUBACK."""


def _device_name(body: Any) -> str:
    if not isinstance(body, dict):
        raise GatewayError(f"can't parse value: {body!r}")
    name = body.get("device")
    if not isinstance(name, str) or not name.strip():
        raise GatewayError("Device name is empty!")
    return name


def _connect(session: MqttSession, body: Any) -> int:
    name = _device_name(body)
    type_ = body.get("type")
    device_type = type_ if isinstance(type_, str) and type_ else DEFAULT_DEVICE_TYPE
    hub = session.hub
    hub.connect_sub_device(session, name, device_type)
    return ACCEPTED


def _disconnect(session: MqttSession, body: Any) -> int:
    session.hub.disconnect_sub_device(session, _device_name(body))
    return ACCEPTED


def _per_device(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise GatewayError(f"can't parse value: {body!r}")
    return body


def _device_entries(session: MqttSession, body: Any, kind: type, what: str) -> list[tuple[str, Any]]:
    """onDeviceTelemetryJson / onDeviceAttributesJson: the devices whose value has the right JSON
    kind (an array of entries, an attributes object); others are skipped with a warning, and a
    message left with none is an IllegalArgumentException (the RuntimeException path)."""
    entries = [(name, value) for name, value in _per_device(body).items() if isinstance(value, kind)]
    skipped = len(body) - len(entries)
    if skipped:
        session.hub.stats[f"gateway_{what}_skipped"] += skipped
    if not entries:
        raise GatewayError(f"Devices {what} message is empty")
    return entries


def _telemetry(session: MqttSession, body: Any) -> int:
    """Each device in turn: convertToGatewayTelemetry, then one rule-engine message per ts group.
    One PUBACK for the message once every device's groups are in; a device that fails to convert
    does not stop the others (thingsboard/thingsboard common/transport/mqtt/.../session/
    AbstractGatewaySessionHandler.java @dfe65d5, onDeviceTelemetryJson, processPostTelemetryMsg)."""
    hub = session.hub
    failed: list[str] = []
    empty = False
    for name, entries in _device_entries(session, body, list, "telemetry"):
        sub = hub.connect_sub_device(session, name, DEFAULT_DEVICE_TYPE, implicit=True)
        try:
            groups = convert.gateway_telemetry_groups(entries, hub.now_ms(), hub.settings.json)
        except gson.JavaRuntimeException as exc:  # catch (Throwable e): "Failed to convert telemetry"
            failed.append(f"{name!r}: {type(exc).__name__}: {exc}")
            continue
        # no group: DefaultTransportService's MsgPackCallback for zero messages never completes
        empty = empty or not groups
        hub.post_telemetry(sub.device, groups)
    return _aggregate_ack(failed, empty)


def _attributes(session: MqttSession, body: Any) -> int:
    """Each device in turn: convertToAttributesProto, one rule-engine message (processPostAttributesMsg)."""
    hub = session.hub
    failed: list[str] = []
    for name, values in _device_entries(session, body, dict, "attributes"):
        sub = hub.connect_sub_device(session, name, DEFAULT_DEVICE_TYPE, implicit=True)
        try:
            converted = convert.attributes(values, hub.settings.json)
        except gson.JavaRuntimeException as exc:  # catch (Throwable e)
            failed.append(f"{name!r}: {type(exc).__name__}: {exc}")
            continue
        hub.post_attributes(sub.device, converted)
    return _aggregate_ack(failed, False)


def _aggregate_ack(failed: list[str], empty: bool) -> int:
    """getAggregatePubAckCallback: SUCCESS only when every device's message is in; a failure is
    ackOrClose; a device with no message leaves the count above zero: no PUBACK at all."""
    if failed:
        raise GatewayConversionError("; ".join(failed))
    return NO_ACK if empty else ACCEPTED


def _attribute_request(session: MqttSession, body: Any) -> int:
    name = _device_name(body)
    request_id = body.get("id")
    client = body.get("client")
    if not isinstance(request_id, int) or isinstance(request_id, bool):
        raise GatewayError("attribute request id is not an integer")
    if not isinstance(client, bool):
        raise GatewayError('"client" must be a boolean')
    if "keys" in body:
        keys = body["keys"]
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise GatewayError('"keys" must be an array of strings')
        single = False
    elif isinstance(body.get("key"), str):
        keys = [body["key"]]
        single = True
    else:
        raise GatewayError('attribute request needs "key" or "keys"')
    hub = session.hub
    sub = hub.connect_sub_device(session, name, DEFAULT_DEVICE_TYPE, implicit=True)
    session.defer(
        lambda: hub.answer_gateway_attribute_request(session, sub.device, request_id, client, keys, single)
    )
    return ACCEPTED


def _rpc_reply(session: MqttSession, body: Any) -> int:
    name = _device_name(body)
    request_id = body.get("id")
    if not isinstance(request_id, int) or isinstance(request_id, bool) or "data" not in body:
        raise GatewayError('gateway RPC reply needs integer "id" and "data"')
    hub = session.hub
    sub = hub.connect_sub_device(session, name, DEFAULT_DEVICE_TYPE, implicit=True)
    # AbstractGatewaySessionHandler stores data.toString(): compact JSON, a string stays quoted
    payload = gson.to_string(body["data"])
    delay_ms = hub.faults.gateway_reply_delay_ms
    if delay_ms:
        hub.loop.call_later(delay_ms / 1000, sub.device.rpc.on_response, request_id, payload)
    else:
        sub.device.rpc.on_response(request_id, payload)
    return ACCEPTED


def _claim(session: MqttSession, body: Any) -> int:
    _per_device(body)
    return ACCEPTED


HANDLERS: dict[str, Callable[[MqttSession, Any], int]] = {
    topics.GATEWAY_CONNECT: _connect,
    topics.GATEWAY_DISCONNECT: _disconnect,
    topics.GATEWAY_TELEMETRY: _telemetry,
    topics.GATEWAY_ATTRIBUTES: _attributes,
    topics.GATEWAY_ATTRIBUTES_REQUEST: _attribute_request,
    topics.GATEWAY_RPC: _rpc_reply,
    topics.GATEWAY_CLAIM: _claim,
}


def handle_gateway_publish(session: MqttSession, topic: str, payload: bytes) -> int:
    handler = HANDLERS.get(topic)
    if handler is None:
        session.hub.stats["unknown_topics"] += 1
        return TOPIC_NAME_INVALID
    return handler(session, convert.parse_json(payload))
