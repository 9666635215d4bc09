"""What a device's PUBLISH means (MqttTransportHandler.processDevicePublish), by exact topic or prefix.

Each handler returns the PUBACK reason code; ``NO_ACK`` means ThingsBoard sends no PUBACK at all.
The emulator's server hands ``handle_publish`` (bound to its hub) to every session it accepts.
Bad payloads raise AdaptorError (the session applies ThingsBoard's v3/v5 reaction), or
UncaughtRuntimeError where ThingsBoard's adaptor lets the exception escape (the channel closes).
"""

from __future__ import annotations

from collections.abc import Callable

from devstack.tb_emulator import convert, gson, topics
from devstack.tb_emulator.gateway_api import handle_gateway_publish
from devstack.tb_emulator.hub import Hub
from devstack.tb_emulator.session import NO_ACK, MqttSession

ACCEPTED = 0x00
TOPIC_NAME_INVALID = 0x90

Handler = Callable[[Hub, MqttSession, str, bytes], int]


def _telemetry(hub: Hub, session: MqttSession, topic: str, payload: bytes) -> int:
    assert session.device is not None
    with convert.adaptor_errors():
        groups = convert.telemetry_groups(convert.parse_json(payload), hub.now_ms(), hub.settings.json)
    if not groups:
        # DefaultTransportService.process(PostTelemetryMsg): one rule-engine message per ts group and
        # a MsgPackCallback that acks after the last; with none (payload "[]") it never acks
        # (thingsboard/thingsboard common/transport/transport-api/.../DefaultTransportService.java @dfe65d5)
        return NO_ACK
    hub.post_telemetry(session.device, groups)
    return ACCEPTED


def _attributes(hub: Hub, session: MqttSession, topic: str, payload: bytes) -> int:
    assert session.device is not None
    with convert.adaptor_errors():
        values = convert.attributes(convert.parse_json(payload), hub.settings.json)
    hub.post_attributes(session.device, values)
    return ACCEPTED


def _claim(hub: Hub, session: MqttSession, topic: str, payload: bytes) -> int:
    # Claiming needs ThingsBoard's customer model; accept and ignore, as a device sees no answer anyway.
    if payload:
        convert.parse_json(payload)
    return ACCEPTED


def _attribute_request(hub: Hub, session: MqttSession, topic: str, payload: bytes) -> int:
    # JsonMqttAdaptor.processGetAttributeRequestMsg catches every RuntimeException: an empty payload
    # (Gson's JsonNull) or one that is not an object is an AdaptorError like a bad key list
    request_id = convert.request_id(topic, topics.DEVICE_ATTRIBUTES_REQUEST_PREFIX)
    body = convert.parse_json(payload)
    if not isinstance(body, dict):
        raise convert.AdaptorError("attribute request is not a JSON object")
    client_keys = convert.key_set(body, "clientKeys")
    shared_keys = convert.key_set(body, "sharedKeys")
    session.defer(lambda: hub.answer_attribute_request(session, request_id, client_keys, shared_keys))
    return ACCEPTED


def _rpc_response(hub: Hub, session: MqttSession, topic: str, payload: bytes) -> int:
    assert session.device is not None
    request_id = convert.request_id(topic, topics.DEVICE_RPC_RESPONSE_PREFIX)
    # processToDeviceRpcResponseMsg keeps the payload as text, whatever it is (empty included);
    # Netty's toString(UTF_8) replaces invalid bytes
    hub.rpc_response(session.device, request_id, payload.decode("utf-8", errors="replace"))
    return ACCEPTED


def _client_rpc(hub: Hub, session: MqttSession, topic: str, payload: bytes) -> int:
    # JsonMqttAdaptor.processToServerRpcRequestMsg catches only IllegalStateException and
    # JsonSyntaxException: a request id that is not a number (Integer.parseInt) or a body without
    # "method" (NullPointerException) escapes and closes the channel; params absent -> null
    # (JsonConverter.convertToServerRpcRequest, thingsboard/thingsboard @dfe65d5)
    with convert.adaptor_errors():
        request_id = gson.parse_long(topic[len(topics.DEVICE_RPC_REQUEST_PREFIX) :], bits=32)
        body = convert.parse_json(payload)
        if not isinstance(body, dict):
            raise gson.IllegalStateException(f"Not a JSON Object: {gson.to_string(body)}")
        if "method" not in body:
            raise gson.NullPointerException('"method" is absent')
        method = gson.get_as_string(body["method"])
    params = body.get("params")
    session.defer(lambda: hub.client_rpc(session, request_id, method, params))
    return ACCEPTED


EXACT: dict[str, Handler] = {
    topics.DEVICE_TELEMETRY: _telemetry,
    topics.DEVICE_ATTRIBUTES: _attributes,
    topics.DEVICE_CLAIM: _claim,
}
PREFIXES: tuple[tuple[str, Handler], ...] = (
    (topics.DEVICE_ATTRIBUTES_REQUEST_PREFIX, _attribute_request),
    (topics.DEVICE_RPC_RESPONSE_PREFIX, _rpc_response),
    (topics.DEVICE_RPC_REQUEST_PREFIX, _client_rpc),
)


def handle_publish(hub: Hub, session: MqttSession, topic: str, payload: bytes) -> int:
    handler = EXACT.get(topic)
    if handler is not None:
        return handler(hub, session, topic, payload)
    if topic.startswith(topics.GATEWAY_PREFIX):
        assert session.device is not None
        if not session.device.is_gateway:
            # MqttTransportHandler: gateway topics from a non-gateway device are only logged
            hub.stats["gateway_topic_from_device"] += 1
            return NO_ACK
        return handle_gateway_publish(hub, session, topic, payload)
    for prefix, prefixed in PREFIXES:
        if topic.startswith(prefix):
            return prefixed(hub, session, topic, payload)
    hub.stats["unknown_topics"] += 1
    return TOPIC_NAME_INVALID
