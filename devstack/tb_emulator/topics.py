"""ThingsBoard's MQTT topic names (MqttTopics) and the subscription filters it accepts, verbatim.

ThingsBoard matches subscription filters with ``switch(topic)``: only these exact strings are
accepted; ``v1/devices/me/#`` or ``v1/devices/me/rpc/request/#`` get a SUBACK failure.
The v2 short topics (``v2/t``, ``v2/a``, ...) are not emulated: their subscriptions are refused.
"""

from __future__ import annotations

from enum import Enum

DEVICE_TELEMETRY = "v1/devices/me/telemetry"
DEVICE_ATTRIBUTES = "v1/devices/me/attributes"
DEVICE_CLAIM = "v1/devices/me/claim"
DEVICE_ATTRIBUTES_REQUEST_PREFIX = "v1/devices/me/attributes/request/"
DEVICE_ATTRIBUTES_RESPONSE_PREFIX = "v1/devices/me/attributes/response/"
DEVICE_RPC_REQUEST_PREFIX = "v1/devices/me/rpc/request/"
DEVICE_RPC_RESPONSE_PREFIX = "v1/devices/me/rpc/response/"

GATEWAY_PREFIX = "v1/gateway/"
GATEWAY_CONNECT = "v1/gateway/connect"
GATEWAY_DISCONNECT = "v1/gateway/disconnect"
GATEWAY_TELEMETRY = "v1/gateway/telemetry"
GATEWAY_ATTRIBUTES = "v1/gateway/attributes"
GATEWAY_ATTRIBUTES_REQUEST = "v1/gateway/attributes/request"
GATEWAY_ATTRIBUTES_RESPONSE = "v1/gateway/attributes/response"
GATEWAY_RPC = "v1/gateway/rpc"
GATEWAY_CLAIM = "v1/gateway/claim"


class Sub(Enum):
    """What a subscription means to the device actor."""

    ATTRIBUTES = "attributes"  # shared attribute updates
    RPC = "rpc"  # server-side RPC requests
    INERT = "inert"  # responses and OTA topics: accepted, written to whether subscribed or not


SUBSCRIBABLE: dict[str, Sub] = {
    DEVICE_ATTRIBUTES: Sub.ATTRIBUTES,
    DEVICE_RPC_REQUEST_PREFIX + "+": Sub.RPC,
    DEVICE_ATTRIBUTES_RESPONSE_PREFIX + "+": Sub.INERT,
    DEVICE_RPC_RESPONSE_PREFIX + "+": Sub.INERT,
    GATEWAY_ATTRIBUTES: Sub.INERT,
    GATEWAY_ATTRIBUTES_RESPONSE: Sub.INERT,
    GATEWAY_RPC: Sub.INERT,
    "/provision/response": Sub.INERT,
    "v2/fw/response/+/chunk/+": Sub.INERT,
    "v2/fw/error": Sub.INERT,
    "v2/sw/response/+/chunk/+": Sub.INERT,
    "v2/sw/error": Sub.INERT,
}
