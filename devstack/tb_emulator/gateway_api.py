"""The gateway API on ``v1/gateway/*`` (AbstractGatewaySessionHandler) for devices marked as gateway.

Per-device messages for a name not connected yet connect it implicitly (type "default"), and a
device seen for the first time is created, as ThingsBoard does. Invalid JSON is an AdaptorError;
a valid JSON of the wrong shape is ThingsBoard's RuntimeException path: PUBACK 0x83, then close.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from devstack.tb_emulator import convert, topics
from devstack.tb_emulator.devices import DEFAULT_DEVICE_TYPE

if TYPE_CHECKING:
    from devstack.tb_emulator.session import MqttSession

ACCEPTED = 0x00
IMPLEMENTATION_SPECIFIC_ERROR = 0x83
TOPIC_NAME_INVALID = 0x90


class GatewayError(RuntimeError):
    """Valid JSON, wrong shape: ThingsBoard acks 0x83 and closes the gateway session."""


class GatewayConversionError(RuntimeError):
    """A device's telemetry entries cannot be converted: ThingsBoard just closes the channel."""


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


def _telemetry(session: MqttSession, body: Any) -> int:
    hub = session.hub
    accepted = 0
    for name, entries in _per_device(body).items():
        if not isinstance(entries, list):
            # onDeviceTelemetryJson: a non-array value is skipped with a warning
            hub.stats["gateway_telemetry_skipped"] += 1
            continue
        sub = hub.connect_sub_device(session, name, DEFAULT_DEVICE_TYPE, implicit=True)
        try:
            groups = convert.telemetry_groups([_strip_entry_metadata(e) for e in entries], hub.now_ms())
        except convert.AdaptorError as exc:
            # onDeviceTelemetryJson: "Failed to convert telemetry" -> channel.close(), no PUBACK
            raise GatewayConversionError(f"telemetry of {name!r}: {exc}") from None
        hub.post_telemetry(sub.device, groups)
        accepted += 1
    if not accepted:
        raise GatewayError("no device telemetry array in gateway telemetry")
    return ACCEPTED


def _strip_entry_metadata(entry: Any) -> Any:
    # Entries may carry {"metadata": {connector, receivedTs, publishedTs}} next to ts/values.
    if isinstance(entry, dict) and "metadata" in entry and "values" in entry:
        return {k: v for k, v in entry.items() if k != "metadata"}
    return entry


def _attributes(session: MqttSession, body: Any) -> int:
    hub = session.hub
    for name, values in _per_device(body).items():
        if not isinstance(values, dict):
            raise GatewayError(f"attributes of {name!r} are not a JSON object")
        sub = hub.connect_sub_device(session, name, DEFAULT_DEVICE_TYPE, implicit=True)
        hub.post_attributes(sub.device, convert.attributes(values))
    return ACCEPTED


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
    payload = convert.dumps(body["data"])
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
