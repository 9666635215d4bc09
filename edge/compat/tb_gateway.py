"""thingsboard-gateway's internals that hosting it needs, and nothing else of ours touches.

Checked against thingsboard-gateway 3.8.5, the tb-mqtt-client 1.13.13 it pins and tb-paho-mqtt-client
2.1.2 (:data:`CHECKED`; pyproject allows exactly these ranges, and tests/compat/test_tb_gateway.py
fails when either moves without the other). What each use relies on:

- ``TBGatewayService.__gateway_rpc_methods`` and ``__rpc_scheduled_methods_functions``: the
  ``gateway_*`` RPCs it serves from the cloud (``update`` pip-installs a release, ``restart`` and
  ``reboot`` are scheduled). Renamed, our hardening would fail at start (AttributeError), not pass
  silently; moved elsewhere, the cloud could update or reboot the Pi again.
- ``TBGatewayService._rpc_request_handler``: read from the instance when the service subscribes to
  RPCs after each connect (``subscribe_to_required_topics``), so an instance attribute set before
  takes its place. Read earlier or from the class, RPCs would take the gateway's slow queue again.
- ``tb_gateway_service.TBUpdater``: looked up when the service starts; it POSTs to
  updates.thingsboard.io at start and hourly. :class:`_NoUpdateCheck` answers every method the
  service calls on it.
- ``TBModuleLoader.LOADED_CONNECTORS``: the loader's cache, keyed by type + class name, consulted
  before it searches its extension directories for a connector class.
- ``tb_client.client`` (tb-mqtt-client's TBGatewayMqttClient) and its ``_client`` (paho's Client):
  the gateway's own MQTT session, whose socket we tune and whose RPC handler tells us it listens.
- paho's ``Client._send_puback(mid)``: called for every QoS 1 PUBLISH it takes (``_handle_publish``,
  manual_ack off); an instance attribute takes the method's place. Renamed, wrapping it fails at the
  first connect (AttributeError); no longer called there, the gateway's session would again be
  closed at ThingsBoard's packet id wrap (tests/edge/test_msg_id_wrap.py fails then).
- paho's ``Client._handle_pubackcomp(cmd)``: called for every PUBACK; for a 2-byte one (a packet
  id, no reason code: success in MQTT 5, as the gateway's client speaks) it builds a ReasonCode and
  a Properties and passes them to ``_do_on_publish(mid, reason_code, properties)`` if the message is
  in ``_out_messages``. :func:`share_success_puback_objects` does that with one pair built once;
  tests/compat/test_tb_gateway.py reads paho's source for those steps.
- tb-mqtt-client's ``gw_send_rpc_reply`` (a sub-device's RPC reply): a PUBLISH of
  ``{"device", "id", "data"}`` (orjson) on ``GATEWAY_RPC_TOPIC``, after waiting for the connection
  and, where ThingsBoard set one, for its ``_devices_connected_through_gateway_messages_rate_limit``.
  :func:`publish_device_rpc_reply` publishes the same message straight to paho and declines where
  that rate limit is set; tests/compat/test_tb_gateway.py compares its message with the client's.
- tb-mqtt-client's ``gw_send_telemetry`` (a sub-device's telemetry): a PUBLISH of ``{device: [items]}``
  (orjson) on ``GATEWAY_TELEMETRY_TOPIC``, after waiting for the connection and, where ThingsBoard
  set them, for ``_devices_connected_through_gateway_telemetry_messages_rate_limit`` and
  ``..._datapoints_rate_limit``, split into parts of at most ``max_payload_size``.
  :func:`publish_gateway_telemetry` publishes that message, for several devices at once, straight to
  paho and declines where either limit is set or the payload is larger; tests/compat compares its
  message with the client's.
- ``TBGatewayService.__send_to_storage``: the "Storage fill thread" that ``__init__`` starts (the
  attribute is read then, from the class) polls ``__converted_data_queue`` (a SimpleQueue, made in
  ``__init_variables``) every 10 ms and hands each item to ``__process_event``: 100 wake-ups a
  second, half of an idle daemon's CPU, for a queue only the gateway's own few messages use.
  :func:`run_service` puts :func:`_fill_storage_on_arrival` in its place, which blocks on the queue.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from pathlib import Path
from queue import Empty
from typing import Any

import orjson
import structlog

log = structlog.get_logger(__name__)

# How long the storage fill loop waits for an item before it looks whether the service stopped.
STORAGE_FILL_STOP_CHECK_S = 1.0

# Distribution: the versions this module's assumptions were checked against.
CHECKED = {
    "thingsboard-gateway": "==3.8.5",
    "tb-mqtt-client": "==1.13.13",
    "tb-paho-mqtt-client": ">=2.1.2,<2.2",
}

RpcRequestHandler = Callable[[Any, Any], None]


def gateway_rpc_methods(gateway: Any) -> dict[str, Any]:
    """The service's ``gateway_*`` RPCs by name (without the prefix); changes to it take effect."""
    methods: dict[str, Any] = gateway._TBGatewayService__gateway_rpc_methods
    return methods


def scheduled_rpc_methods(gateway: Any) -> dict[str, Any]:
    """The RPCs the service runs later (``restart``, ``reboot``); changes to it take effect."""
    methods: dict[str, Any] = gateway._TBGatewayService__rpc_scheduled_methods_functions
    return methods


def replace_rpc_request_handler(
    gateway: Any, replace: Callable[[RpcRequestHandler], RpcRequestHandler]
) -> None:
    """Install ``replace(the service's handler)`` as the handler of every RPC from ThingsBoard.

    Must run before the first connect (a connector's constructor does): the service hands its
    handler to the MQTT client when it subscribes after connecting.
    """
    gateway._rpc_request_handler = replace(gateway._rpc_request_handler)


def mqtt_client(gateway: Any) -> Any | None:
    """The gateway's MQTT client while it is connected to ThingsBoard, else None."""
    tb_client = getattr(gateway, "tb_client", None)  # absent until the service has built it
    if tb_client is None or not tb_client.is_connected():
        return None
    return tb_client.client


def mqtt_socket(client: Any) -> socket.socket | None:
    """The TCP socket under the gateway's MQTT client (None between connections)."""
    sock: socket.socket | None = client._client.socket()
    return sock


def skip_puback_for_packet_id_zero(client: Any) -> None:
    """Make the gateway's paho client take a QoS 1 PUBLISH with packet id 0 without PUBACKing it.

    ThingsBoard puts the low 16 bits of a per-session int that never wraps on the wire
    (DeviceSessionCtx.nextMsgId, netty MqttEncoder), so every 65,536th publish to the gateway (one
    per RPC) carries id 0; PUBACK 0 is malformed to ThingsBoard's decoder (netty MqttDecoder
    "invalid messageId") and MqttTransportHandler.channelRead closes the session, losing the reply
    of the RPC in flight. The PUBACK is worth nothing to keep: ThingsBoard never re-sends, and for
    a gateway's sub-device RPCs it tracks no PUBACK at all (AbstractGatewayDeviceSessionContext.
    onToDeviceRpcRequest). Idempotent: paho keeps one Client across reconnects.
    """
    from paho.mqtt.enums import MQTTErrorCode

    paho = client._client
    if getattr(paho, "_giftwheel_skips_puback_0", False):
        return
    send_puback = paho._send_puback

    def _send_puback(mid: int) -> Any:
        if mid == 0:
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return send_puback(mid)

    paho._send_puback = _send_puback
    paho._giftwheel_skips_puback_0 = True


def share_success_puback_objects(client: Any) -> None:
    """Make the gateway's paho client take a plain (2-byte) PUBACK without building its reason code
    and properties anew each time.

    paho builds a ReasonCode and a Properties for every PUBACK, each filling tables of every MQTT 5
    name: under load (an RPC reply and telemetry acknowledged per command) ~30 % of the samples of paho's
    network thread (py-spy, 180 RPCs/s). A 2-byte PUBACK is success with no properties, so one pair
    of them, built once, says the same; the only reader, tb-mqtt-client's on_publish, reads the
    reason code's value. Other PUBACKs (a reason code, properties) and PUBCOMPs go paho's way.
    Idempotent: paho keeps one Client across reconnects.
    """
    from paho.mqtt.client import MQTT_LOG_DEBUG
    from paho.mqtt.enums import MQTTErrorCode
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    from paho.mqtt.reasoncodes import ReasonCode

    paho = client._client
    if getattr(paho, "_giftwheel_shares_puback_objects", False):
        return
    handle_pubackcomp = paho._handle_pubackcomp
    success = ReasonCode(PacketTypes.PUBACK)
    no_properties = Properties(PacketTypes.PUBACK)  # type: ignore[no-untyped-call]  # paho: untyped

    def _handle_pubackcomp(cmd: str) -> Any:
        packet = paho._in_packet
        if cmd != "PUBACK" or packet["remaining_length"] != 2:
            return handle_pubackcomp(cmd)
        (mid,) = struct.unpack("!H", packet["packet"][:2])
        paho._easy_log(MQTT_LOG_DEBUG, "Received %s (Mid: %d)", cmd, mid)
        with paho._out_message_mutex:
            if mid in paho._out_messages:
                return paho._do_on_publish(mid, success, no_properties)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    paho._handle_pubackcomp = _handle_pubackcomp
    paho._giftwheel_shares_puback_objects = True


def publish_device_rpc_reply(
    client: Any, device: Any, request_id: Any, reply: dict[str, Any], qos: int
) -> bool:
    """Publish a sub-device's RPC reply as tb-mqtt-client's ``gw_send_rpc_reply`` does, on the calling
    thread. The gateway's way (``send_rpc_reply``) queues it for the gateway's reply thread, which
    goes through the client's generic publish (rate limits, payload splitting, metadata, logging):
    ~0.1 ms of CPU per reply and one thread hand-off more. ``client`` must be connected (paho keeps
    a QoS 1 message across a disconnect after that and resends it, as it would the gateway's).

    False, having published nothing, where the client would do more than publish: ThingsBoard set a
    rate limit for the gateway's device messages (the client waits for its tokens), paho's queue is
    full (the client retries), or there is no request id (the gateway sends nothing then). The
    caller then takes the gateway's way.
    """
    from paho.mqtt.enums import MQTTErrorCode
    from tb_gateway_mqtt import GATEWAY_RPC_TOPIC

    if request_id is None or client._devices_connected_through_gateway_messages_rate_limit.has_limit():
        return False
    message = {"device": device, "id": request_id, "data": reply}
    info = client._client.publish(
        GATEWAY_RPC_TOPIC, orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS), qos=qos
    )
    return bool(info.rc != MQTTErrorCode.MQTT_ERR_QUEUE_SIZE)


def publish_gateway_telemetry(
    client: Any, telemetry: dict[str, list[dict[str, Any]]], qos: int
) -> Any | None:
    """Publish the sub-devices' telemetry as one gateway message, ``{device: [items], ...}``, on the
    calling thread; returns paho's MQTTMessageInfo. tb-mqtt-client's ``gw_send_telemetry`` publishes
    the same message for one device, after its rate-limit checks, payload splitting and metadata
    (~0.15 ms of CPU per message). ThingsBoard takes several devices in one message and acknowledges
    it once every device's telemetry is in (AbstractGatewaySessionHandler.onDeviceTelemetryJson,
    getAggregatePubAckCallback). ``client`` must be connected.

    None, having published nothing, where the client would do more than publish: ThingsBoard set a
    rate limit for the gateway's device telemetry (messages or data points), the payload is over the
    client's ``max_payload_size`` (it splits), or paho's queue is full (it retries). The caller then
    takes the client's way."""
    from paho.mqtt.enums import MQTTErrorCode
    from tb_gateway_mqtt import GATEWAY_TELEMETRY_TOPIC

    if (
        client._devices_connected_through_gateway_telemetry_messages_rate_limit.has_limit()
        or client._devices_connected_through_gateway_telemetry_datapoints_rate_limit.has_limit()
    ):
        return None
    payload = orjson.dumps(telemetry, option=orjson.OPT_NON_STR_KEYS)
    if len(payload) > client.max_payload_size:
        return None
    info = client._client.publish(GATEWAY_TELEMETRY_TOPIC, payload, qos=qos)
    return None if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE else info


def listens_for_device_rpcs(client: Any) -> bool:
    """The service has installed its sub-device RPC handler (a moment after the MQTT connect)."""
    return client.devices_server_side_rpc_request_handler is not None


class _NoUpdateCheck:
    """Stands in for TBUpdater: updates are the fleet's own deployment, never over ThingsBoard."""

    def __init__(self) -> None:
        from thingsboard_gateway.version import VERSION

        self._version = {"current_version": VERSION, "latest_version": VERSION}

    def get_version(self) -> dict[str, str]:
        return self._version

    def get_platform(self) -> str:
        return ""

    def get_release(self) -> str:
        return ""

    def update(self) -> str:
        return "updates are managed by the fleet's own deployment, not over ThingsBoard"

    def stop(self) -> None:
        """Nothing runs."""


def _fill_storage_on_arrival(service: Any) -> None:
    """The gateway's storage fill loop, woken by an item instead of every 10 ms: each item the
    service queued goes to its ``__process_event`` as soon as it is there, in order."""
    queue = service._TBGatewayService__converted_data_queue
    while not service.stopped:
        try:
            task = queue.get(timeout=STORAGE_FILL_STOP_CHECK_S)
        except Empty:
            continue
        try:
            service._TBGatewayService__process_event(task)
        except Exception:  # as the gateway's loop: one bad item must not end the thread
            log.exception("gateway data not stored")


def fill_storage_on_arrival(service_class: type) -> None:
    """Make ``service_class`` start :func:`_fill_storage_on_arrival` as its storage fill thread."""
    service_class._TBGatewayService__send_to_storage = _fill_storage_on_arrival  # type: ignore[attr-defined]


def run_service(config_path: Path, connector_key: str, connector_class: type) -> None:
    """Run TBGatewayService on this thread until SIGINT, without its update check or its polling
    storage fill loop, with ``connector_class`` for the connectors whose type + class name is
    ``connector_key``."""
    from thingsboard_gateway.gateway import tb_gateway_service
    from thingsboard_gateway.tb_utility.tb_loader import TBModuleLoader

    TBModuleLoader.LOADED_CONNECTORS[connector_key] = connector_class
    tb_gateway_service.TBUpdater = _NoUpdateCheck
    fill_storage_on_arrival(tb_gateway_service.TBGatewayService)
    tb_gateway_service.TBGatewayService(str(config_path))
