"""The gateway API on ``v1/gateway/*`` (AbstractGatewaySessionHandler) for devices marked as gateway.

Follows thingsboard/thingsboard common/transport/mqtt/src/main/java/org/thingsboard/server/transport/
mqtt/session/AbstractGatewaySessionHandler.java and MqttTransportHandler.handleGatewayPublishMsg
@dfe65d5 (the same JSON paths at v4.3.0.1). Members are read with Gson's getters and their coercions
(gson.py): a device name 5 is "5", ["m1"] is "m1", an id "5" or 5.7 is 5, "client": "TRUE" is true
and "yes" false. What a message can end in:

- invalid JSON: AdaptorException (convert.AdaptorError);
- any RuntimeException a getter or check raises (an absent member's NullPointerException, a JSON
  null's UnsupportedOperationException, a NumberFormatException, "Device name is empty!", a
  message that is not an object...): PUBACK 0x83, then close (GatewayError);
- a device's telemetry or attributes that do not convert: ackOrClose (GatewayConversionError);
- a sub-device ThingsBoard cannot create (a blank name, a blank new type): the transport API never
  answers, so the PUBACK (0x80; 0x83 for an attribute request) comes when its request times out,
  and the session stays.

Per-device messages for a name not connected yet connect it implicitly (type "default"), and a device
seen for the first time is created, as ThingsBoard does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from devstack.tb_emulator import convert, gson, topics
from devstack.tb_emulator.convert import GatewayConversionError, GatewayError
from devstack.tb_emulator.devices import DEFAULT_DEVICE_TYPE, DataValidationError
from devstack.tb_emulator.hub import Hub, SubDeviceSession
from devstack.tb_emulator.session import NO_ACK, MqttSession

log = structlog.get_logger("tb_emulator.gateway")

ACCEPTED = 0x00
UNSPECIFIED_ERROR = 0x80
IMPLEMENTATION_SPECIFIC_ERROR = 0x83
TOPIC_NAME_INVALID = 0x90
_CAN_T_PARSE_VALUE = "Can't parse value: "


def _validated_object(body: Any) -> dict[str, Any]:
    """validateJsonObject: JsonSyntaxException("Can't parse value: ...") for anything but an object."""
    if not isinstance(body, dict):
        raise gson.JsonSyntaxException(_CAN_T_PARSE_VALUE + gson.to_string(body))
    return body


def _device_name(body: Any) -> str:
    """checkDeviceName(getDeviceName(json)): ``json.getAsJsonObject().get("device").getAsString()``,
    then StringUtils.isEmpty refuses "" (a blank name passes here and fails at device creation)."""
    name = gson.get_as_string(gson.member(gson.get_as_json_object(body), "device"))
    if not name:
        raise GatewayError("Device name is empty!")
    return name


def _sub_device(
    hub: Hub, session: MqttSession, name: str, type_: str = DEFAULT_DEVICE_TYPE, *, implicit: bool = True
) -> SubDeviceSession | None:
    """onDeviceConnect: the sub-device's session, the device found or created. None where ThingsBoard
    cannot create it: DefaultTransportApiService's DataValidationException sends no answer."""
    try:
        return hub.connect_sub_device(session, name, type_, implicit=implicit)
    except DataValidationError as exc:
        hub.stats["gateway_devices_not_created"] += 1
        log.info("sub-device not created", device=name, type=type_, error=str(exc))
        return None


def _failed_later(hub: Hub, session: MqttSession, reason: int) -> int:
    """processFailure once the transport API request times out (DefaultTbQueueRequestTemplate):
    PUBACK ``reason``, the session stays."""
    session.ack_later(hub.settings.transport_api_timeout_s, reason)
    return NO_ACK


def _connect(hub: Hub, session: MqttSession, body: Any) -> int:
    """onDeviceConnectJson: the name, then getDeviceType: an absent or null "type" is "default",
    anything else its getAsString ("" stays "", and a new device of type "" is not created)."""
    name = _device_name(body)
    type_ = body.get("type")
    device_type = DEFAULT_DEVICE_TYPE if type_ is None else gson.get_as_string(type_)
    if _sub_device(hub, session, name, device_type, implicit=False) is None:
        return _failed_later(hub, session, UNSPECIFIED_ERROR)
    return ACCEPTED


def _disconnect(hub: Hub, session: MqttSession, body: Any) -> int:
    """onDeviceDisconnectJson: deregisterSession, a name this gateway never connected included."""
    hub.disconnect_sub_device(session, _device_name(body))
    return ACCEPTED


def _device_entries(
    hub: Hub, session: MqttSession, body: Any, kind: type, what: str
) -> list[tuple[str, Any]]:
    """onDeviceTelemetryJson / onDeviceAttributesJson: the devices whose value has the right JSON
    kind (an array of entries, an attributes object); others are skipped with a warning, and a
    message left with none is an IllegalArgumentException (the RuntimeException path)."""
    entries = [(name, value) for name, value in _validated_object(body).items() if isinstance(value, kind)]
    skipped = len(body) - len(entries)
    if skipped:
        hub.stats[f"gateway_{what}_skipped"] += skipped
    if not entries:
        raise GatewayError(f"Devices {what} message is empty")
    return entries


def _telemetry(hub: Hub, session: MqttSession, body: Any) -> int:
    """Each device in turn: convertToGatewayTelemetry, then one rule-engine message per ts group.
    One PUBACK for the message once every device's groups are in; a device that fails to convert
    or cannot be created does not stop the others (onDeviceTelemetryJson, processPostTelemetryMsg)."""
    failed: list[str] = []
    empty = not_created = False
    for name, entries in _device_entries(hub, session, body, list, "telemetry"):
        sub = _sub_device(hub, session, name)
        if sub is None:
            not_created = True
            continue
        try:
            groups = convert.gateway_telemetry_groups(entries, hub.now_ms(), hub.settings.json)
        except gson.JavaRuntimeException as exc:  # catch (Throwable e): "Failed to convert telemetry"
            failed.append(f"{name!r}: {type(exc).__name__}: {exc}")
            continue
        # no group: DefaultTransportService's MsgPackCallback for zero messages never completes
        empty = empty or not groups
        hub.post_telemetry(sub.device, groups)
    return _aggregate_ack(hub, session, failed, empty, not_created)


def _attributes(hub: Hub, session: MqttSession, body: Any) -> int:
    """Each device in turn: convertToAttributesProto, one rule-engine message (processPostAttributesMsg)."""
    failed: list[str] = []
    not_created = False
    for name, values in _device_entries(hub, session, body, dict, "attributes"):
        sub = _sub_device(hub, session, name)
        if sub is None:
            not_created = True
            continue
        try:
            converted = convert.attributes(values, hub.settings.json)
        except gson.JavaRuntimeException as exc:  # catch (Throwable e)
            failed.append(f"{name!r}: {type(exc).__name__}: {exc}")
            continue
        hub.post_attributes(sub.device, converted)
    return _aggregate_ack(hub, session, failed, False, not_created)


def _aggregate_ack(hub: Hub, session: MqttSession, failed: list[str], empty: bool, not_created: bool) -> int:
    """getAggregatePubAckCallback: SUCCESS only when every device's message is in; a failure to
    convert is ackOrClose at once; a device not created fails later (processFailure, 0x80) unless
    ackOrClose answered first; a device with no message leaves the count above zero: no PUBACK."""
    if failed:
        raise GatewayConversionError("; ".join(failed))
    if not_created:
        return _failed_later(hub, session, UNSPECIFIED_ERROR)
    return NO_ACK if empty else ACCEPTED


def _attribute_request(hub: Hub, session: MqttSession, body: Any) -> int:
    """onDeviceAttributesRequestJson, in its order: validateJsonObject, "id" getAsInt, "device"
    getAsString (no checkDeviceName), "client" getAsBoolean, then "key" getAsString where the member
    is present (null included), else "keys" getAsJsonArray and each element's getAsString, as a set.
    A device that cannot be created fails with 0x83 (processGetAttributeRequestMessage)."""
    obj = _validated_object(body)
    request_id = gson.get_as_int(gson.member(obj, "id"))
    name = gson.get_as_string(gson.member(obj, "device"))
    client = gson.get_as_boolean(gson.member(obj, "client"))
    if "key" in obj:
        keys = {gson.get_as_string(obj["key"])}
    else:
        keys = {gson.get_as_string(key) for key in gson.get_as_json_array(gson.member(obj, "keys"))}
    sub = _sub_device(hub, session, name)
    if sub is None:
        return _failed_later(hub, session, IMPLEMENTATION_SPECIFIC_ERROR)
    session.defer(lambda: hub.answer_gateway_attribute_request(session, sub.device, request_id, client, keys))
    return ACCEPTED


def _rpc_reply(hub: Hub, session: MqttSession, body: Any) -> int:
    """onDeviceRpcResponseJson: validateJsonObject, "device" getAsString (no checkDeviceName), "id"
    getAsInt, "data" kept as ``data.toString()``: compact JSON, a string stays quoted, null is "null"."""
    obj = _validated_object(body)
    name = gson.get_as_string(gson.member(obj, "device"))
    request_id = gson.get_as_int(gson.member(obj, "id"))
    payload = gson.to_string(gson.member(obj, "data"))
    sub = _sub_device(hub, session, name)
    if sub is None:
        return _failed_later(hub, session, UNSPECIFIED_ERROR)
    delay_ms = hub.faults.gateway_reply_delay_ms
    if delay_ms:
        hub.loop.call_later(delay_ms / 1000, hub.rpc_response, sub.device, request_id, payload)
    else:
        hub.rpc_response(sub.device, request_id, payload)
    return ACCEPTED


def _claim(hub: Hub, session: MqttSession, body: Any) -> int:
    _validated_object(body)
    return ACCEPTED


HANDLERS: dict[str, Callable[[Hub, MqttSession, Any], int]] = {
    topics.GATEWAY_CONNECT: _connect,
    topics.GATEWAY_DISCONNECT: _disconnect,
    topics.GATEWAY_TELEMETRY: _telemetry,
    topics.GATEWAY_ATTRIBUTES: _attributes,
    topics.GATEWAY_ATTRIBUTES_REQUEST: _attribute_request,
    topics.GATEWAY_RPC: _rpc_reply,
    topics.GATEWAY_CLAIM: _claim,
}


def handle_gateway_publish(hub: Hub, session: MqttSession, topic: str, payload: bytes) -> int:
    handler = HANDLERS.get(topic)
    if handler is None:
        hub.stats["unknown_topics"] += 1
        return TOPIC_NAME_INVALID
    tree = convert.parse_json(payload)
    try:
        return handler(hub, session, tree)
    except gson.JavaRuntimeException as exc:  # handleGatewayPublishMsg: catch (RuntimeException e)
        raise GatewayError(f"{type(exc).__name__}: {exc}") from None
