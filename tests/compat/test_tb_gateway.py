"""What edge/compat/tb_gateway.py assumes of thingsboard-gateway, tb-mqtt-client and paho still holds.

The service is built the way its constructor starts (``__init_variables``: the RPC tables, no
thread, no connection); the MQTT client is a real one connected to a real Mosquitto.
"""

from __future__ import annotations

import inspect
import queue
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from tb_gateway_mqtt import TBGatewayMqttClient
from thingsboard_gateway.gateway import tb_gateway_service
from thingsboard_gateway.gateway.tb_gateway_service import TBGatewayService
from thingsboard_gateway.tb_utility.tb_loader import TBModuleLoader

from devstack.mosquitto_server import MosquittoServer
from edge.compat import tb_gateway
from edge.gateway_host import CONNECTOR_CLASS, CONNECTOR_TYPE, deliver_rpcs_directly, harden
from tests.compat.versions import assert_checked_range

COMPAT = "edge/compat/tb_gateway.py"


@pytest.mark.parametrize("distribution", sorted(tb_gateway.CHECKED))
def test_installed_and_allowed_versions_are_the_checked_ones(distribution: str) -> None:
    assert_checked_range(distribution, tb_gateway.CHECKED[distribution], COMPAT)


@pytest.fixture
def service() -> TBGatewayService:
    gateway = object.__new__(TBGatewayService)
    gateway._TBGatewayService__init_variables()
    return gateway


def test_hardening_removes_the_update_and_the_scheduled_restart_and_reboot(service: Any) -> None:
    assert "update" in service._TBGatewayService__gateway_rpc_methods, f"{COMPAT}: no 'update' RPC to drop"
    scheduled = service._TBGatewayService__rpc_scheduled_methods_functions
    assert {"restart", "reboot"} <= set(scheduled), f"{COMPAT}: scheduled RPCs are now {set(scheduled)}"
    harden(service)
    assert "update" not in service._TBGatewayService__gateway_rpc_methods
    assert "ping" in service._TBGatewayService__gateway_rpc_methods  # the harmless ones stay
    assert not service._TBGatewayService__rpc_scheduled_methods_functions


def test_the_service_dispatches_gateway_rpcs_from_the_tables_hardening_edits() -> None:
    source = inspect.getsource(TBGatewayService)
    for use in (
        "self.__gateway_rpc_methods.get(method_to_call)",
        "method_to_call in self.__rpc_scheduled_methods_functions",
    ):
        assert use in source, f"{COMPAT}: TBGatewayService no longer dispatches with {use!r}"


def test_our_rpc_handler_is_the_one_the_service_subscribes_with(service: Any) -> None:
    delivered: list[dict[str, Any]] = []
    deliver_rpcs_directly(service, {"motor_01"}, delivered.append)
    service._rpc_request_handler(7, {"device": "motor_01", "data": {"id": 7, "method": "rotate"}})
    assert delivered == [{"device": "motor_01", "data": {"id": 7, "method": "rotate"}, "id": 7}]
    # The service reads the handler from the instance when it subscribes after each connect.
    subscribe = inspect.getsource(TBGatewayService.subscribe_to_required_topics)
    assert "gw_set_server_side_rpc_request_handler(self._rpc_request_handler)" in subscribe, (
        f"{COMPAT}: the service no longer installs self._rpc_request_handler when it subscribes"
    )


def test_the_update_check_stand_in_answers_everything_the_service_asks_of_its_updater() -> None:
    source = inspect.getsource(tb_gateway_service)
    assert "self.__updater = TBUpdater()" in source, (
        f"{COMPAT}: the service no longer builds TBUpdater by name"
    )
    asked = set(re.findall(r"self\.__updater\.(\w+)\(", source))
    answered = {name for name in dir(tb_gateway._NoUpdateCheck) if not name.startswith("_")}
    assert asked <= answered, (
        f"{COMPAT}: the service now also calls {sorted(asked - answered)} on its updater"
    )


def test_a_registered_connector_class_is_what_the_loader_returns() -> None:
    class Marker:
        pass

    key = CONNECTOR_TYPE + CONNECTOR_CLASS
    before = TBModuleLoader.LOADED_CONNECTORS.get(key)
    TBModuleLoader.LOADED_CONNECTORS[key] = Marker
    try:
        assert TBModuleLoader.import_module(CONNECTOR_TYPE, CONNECTOR_CLASS) is Marker
    finally:
        TBModuleLoader.LOADED_CONNECTORS.pop(key)
        if before is not None:
            TBModuleLoader.LOADED_CONNECTORS[key] = before


@pytest.fixture
def mqtt_client() -> Iterator[TBGatewayMqttClient]:
    with MosquittoServer() as broker:
        client = TBGatewayMqttClient(broker.host, broker.port, "compat-test")
        try:
            yield client
        finally:
            client.stop()


def test_the_mqtt_socket_and_rpc_handler_are_where_we_read_them(mqtt_client: TBGatewayMqttClient) -> None:
    assert tb_gateway.mqtt_socket(mqtt_client) is None  # not connected yet
    assert not tb_gateway.listens_for_device_rpcs(mqtt_client)
    mqtt_client.connect()
    deadline = time.monotonic() + 10
    while not mqtt_client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    sock = tb_gateway.mqtt_socket(mqtt_client)
    assert isinstance(sock, socket.socket), f"{COMPAT}: no socket under the connected MQTT client"
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 0  # paho still leaves Nagle on
    mqtt_client.gw_set_server_side_rpc_request_handler(lambda client, content: None)
    assert tb_gateway.listens_for_device_rpcs(mqtt_client)


def _connected(client: TBGatewayMqttClient) -> None:
    client.connect()
    deadline = time.monotonic() + 10
    while not client.is_connected() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.is_connected()


@contextmanager
def _watched(topic: str) -> Iterator[tuple[TBGatewayMqttClient, queue.SimpleQueue[tuple[str, bytes, int]]]]:
    """A gateway client connected to a real Mosquitto, and what a watcher subscribed to ``topic``
    receives (topic, payload, QoS)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    with MosquittoServer() as broker:
        received: queue.SimpleQueue[tuple[str, bytes, int]] = queue.SimpleQueue()
        watcher = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="watcher")
        watcher.on_message = lambda _c, _u, m: received.put((m.topic, m.payload, m.qos))
        watcher.connect(broker.host, broker.port)
        watcher.subscribe(topic, qos=1)
        watcher.loop_start()
        client = TBGatewayMqttClient(broker.host, broker.port, "compat-test")
        try:
            _connected(client)
            time.sleep(0.5)  # the watcher's subscription is in place
            yield client, received
        finally:
            client.stop()
            watcher.loop_stop()
            watcher.disconnect()


def test_our_rpc_reply_is_the_message_the_gateway_client_publishes() -> None:
    with _watched("v1/gateway/rpc") as (client, received):
        reply = {"accepted": True, "commandId": "c-00000001", "queuedRounds": 3}
        client.gw_send_rpc_reply("motor_01", 7, reply, quality_of_service=1).get()
        theirs = received.get(timeout=5)
        assert tb_gateway.publish_device_rpc_reply(client, "motor_01", 7, reply, 1)
        ours = received.get(timeout=5)
        assert ours == theirs, f"{COMPAT}: tb-mqtt-client publishes RPC replies differently now"

        # Where the client would do more than publish, ours declines and publishes nothing.
        assert not tb_gateway.publish_device_rpc_reply(client, "motor_01", None, reply, 1)
        client._devices_connected_through_gateway_messages_rate_limit.set_limit("10:1,")
        assert not tb_gateway.publish_device_rpc_reply(client, "motor_01", 8, reply, 1)
        time.sleep(0.3)
        assert received.empty()


def test_our_telemetry_is_the_message_the_gateway_client_publishes() -> None:
    with _watched("v1/gateway/telemetry") as (client, received):
        items = [
            {
                "ts": 1_700_000_000_000,
                "values": {"state": "running", "commandId": "c-1", "commandDone": False},
            },
            {
                "ts": 1_700_000_000_001,
                "values": {"state": "idle", "queuedRounds": 0, "commandDone": True},
            },
        ]
        client.gw_send_telemetry("motor_01", items, quality_of_service=1).get()
        theirs = received.get(timeout=5)
        info = tb_gateway.publish_gateway_telemetry(client, {"motor_01": items}, 1)
        assert info is not None
        info.wait_for_publish(5)
        assert info.is_published()
        ours = received.get(timeout=5)
        assert ours == theirs, f"{COMPAT}: tb-mqtt-client publishes gateway telemetry differently now"

        both = {"motor_01": items[:1], "motor_02": items[1:]}
        info = tb_gateway.publish_gateway_telemetry(client, both, 1)
        assert info is not None
        assert orjson.loads(received.get(timeout=5)[1]) == both

        # Where the client would split the message or wait for a rate limit, ours publishes nothing.
        large = [{"ts": 1, "values": {"detail": "x" * client.max_payload_size}}]
        assert tb_gateway.publish_gateway_telemetry(client, {"motor_01": large}, 1) is None
        client._devices_connected_through_gateway_telemetry_datapoints_rate_limit.set_limit("10:1,")
        assert tb_gateway.publish_gateway_telemetry(client, {"motor_01": items}, 1) is None
        client._devices_connected_through_gateway_telemetry_datapoints_rate_limit.set_limit("0:0,")
        client._devices_connected_through_gateway_telemetry_messages_rate_limit.set_limit("10:1,")
        assert tb_gateway.publish_gateway_telemetry(client, {"motor_01": items}, 1) is None
        time.sleep(0.3)
        assert received.empty()


def test_paho_takes_a_plain_puback_the_way_our_shared_objects_repeat() -> None:
    import paho.mqtt.client as paho

    source = inspect.getsource(paho.Client._handle_pubackcomp)
    for step in (
        "mid, = struct.unpack(\"!H\", self._in_packet['packet'][:2])",
        "reasonCode = ReasonCode(packet_type)",
        "properties = Properties(packet_type)",
        "if self._in_packet['remaining_length'] > 2:",
        "if mid in self._out_messages:",
        "rc = self._do_on_publish(mid, reasonCode, properties)",
    ):
        assert step in source, f"{COMPAT}: paho's PUBACK handling no longer does {step!r}"


def test_a_plain_puback_completes_the_publish_with_a_success_code() -> None:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    with MosquittoServer() as broker:
        # With no subscriber, Mosquitto's PUBACK carries reason 16 (3 bytes): paho's way, not ours.
        watcher = paho.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id="watcher")
        watcher.connect(broker.host, broker.port)
        watcher.subscribe("v1/gateway/telemetry", qos=1)
        watcher.loop_start()
        client = TBGatewayMqttClient(broker.host, broker.port, "compat-test")
        acknowledged: dict[int, tuple[Any, Any]] = {}
        on_publish = client._client.on_publish

        def watch(paho_client: Any, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
            acknowledged[mid] = (reason_code, properties)
            on_publish(paho_client, userdata, mid, reason_code, properties)

        client._client.on_publish = watch
        try:
            tb_gateway.share_success_puback_objects(client)
            tb_gateway.share_success_puback_objects(client)  # called on every connect: idempotent
            _connected(client)
            time.sleep(0.5)  # the watcher's subscription is in place
            infos = [client.gw_send_telemetry("motor_01", {"n": n}, quality_of_service=1) for n in range(3)]
            assert [info.get() for info in infos] == [0, 0, 0]
            acks = [acknowledged[info.message_info[0].mid] for info in infos]
            assert [(code.value, properties.json()) for code, properties in acks] == [(0, {})] * 3
            assert acks[0][0] is acks[1][0] is acks[2][0], "each PUBACK built its own reason code"
            assert not client._client._out_messages
        finally:
            client.stop()
            watcher.loop_stop()
            watcher.disconnect()


def _wakeups(native_id: int) -> int:
    status = Path(f"/proc/self/task/{native_id}/status").read_text()
    match = re.search(r"^voluntary_ctxt_switches:\s+(\d+)", status, re.MULTILINE)
    assert match is not None
    return int(match.group(1))


def test_the_storage_fill_thread_the_service_starts_is_ours_and_blocks_on_its_queue(
    service: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The service starts its storage fill thread on ``self.__send_to_storage``, a loop that polls the
    converted data queue every 10 ms. Ours, put on the class as run_service does, takes each item at
    once and otherwise sleeps: over 0.5 s idle the thread wakes a few times, not 50."""
    init = inspect.getsource(TBGatewayService.__init__)
    assert "target=self.__send_to_storage" in init, f"{COMPAT}: the storage fill thread is started elsewhere"
    original_loop = TBGatewayService._TBGatewayService__send_to_storage
    source = inspect.getsource(original_loop)
    assert "self.__converted_data_queue" in source, COMPAT
    assert "self.__process_event(" in source, COMPAT
    # put back after the test, as other tests build the service
    monkeypatch.setattr(TBGatewayService, "_TBGatewayService__send_to_storage", original_loop)
    tb_gateway.fill_storage_on_arrival(TBGatewayService)
    assert TBGatewayService._TBGatewayService__send_to_storage is not original_loop
    processed: list[Any] = []
    arrived = threading.Event()

    def process(task: Any) -> None:
        processed.append(task)
        arrived.set()

    service._TBGatewayService__process_event = process
    native: list[int] = []

    def fill() -> None:
        native.append(threading.get_native_id())
        service._TBGatewayService__send_to_storage()

    thread = threading.Thread(target=fill, daemon=True)
    thread.start()
    try:
        queue = service.get_converted_data_queue()
        queue.put(("connector", "id", "first"))
        assert arrived.wait(1.0)
        time.sleep(0.1)
        before = _wakeups(native[0])
        time.sleep(0.5)
        assert _wakeups(native[0]) - before <= 3
        queue.put(("connector", "id", "second"))
        arrived.clear()
        assert arrived.wait(1.0)
        assert processed == [("connector", "id", "first"), ("connector", "id", "second")]
    finally:
        service.stopped = True
        thread.join(tb_gateway.STORAGE_FILL_STOP_CHECK_S + 1)
    assert not thread.is_alive()
