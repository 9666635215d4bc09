"""The official tb-mqtt-client (device and gateway clients, MQTT 5) against the emulator process.

These need ThingsBoard's semantics: access-token auth, the getSessionLimits answer the SDK waits
for, attribute request/response ids, RPC ids in topics, the gateway envelope, and the rule chain
that turns the dispatcher's client-side RPC into a server-side RPC to a gateway sub-device.
A plain MQTT broker passes none of them.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from tb_device_mqtt import TBDeviceMqttClient
from tb_gateway_mqtt import TBGatewayMqttClient

from devstack.tb_emulator.harness import EmulatorProcess
from devstack.waiting import wait_until
from tests.emulator.conftest import DISPATCHER_TOKEN, GATEWAY_TOKEN

pytestmark = pytest.mark.slow
WAIT_S = 10


@pytest.fixture
def device(tb_process: EmulatorProcess) -> Iterator[TBDeviceMqttClient]:
    client = TBDeviceMqttClient(tb_process.host, port=tb_process.mqtt_port, username="sensor-token")
    client.connect()
    yield client
    client.stop()
    client.disconnect()


@pytest.fixture
def gateway(tb_process: EmulatorProcess) -> Iterator[TBGatewayMqttClient]:
    client = TBGatewayMqttClient(tb_process.host, port=tb_process.mqtt_port, username=GATEWAY_TOKEN)
    client.connect()
    wait_until(lambda: client.is_connected() and client.rate_limits_received, WAIT_S)
    yield client
    client.stop()
    client.disconnect()


def test_device_telemetry_in_every_shape(tb_process: EmulatorProcess, device: TBDeviceMqttClient) -> None:
    assert device.send_telemetry({"temperature": 21.5}).get() == 0
    assert device.send_telemetry({"ts": 1700000000000, "values": {"humidity": 40}}).get() == 0
    assert (
        device.send_telemetry([{"ts": 1700000001000, "values": {"humidity": 41}}, {"pressure": "1013"}]).get()
        == 0
    )
    latest = wait_until(lambda: (t := tb_process.latest_telemetry("sensor")) and len(t) == 3 and t, WAIT_S)
    # JSON_TYPE_CAST_ENABLED: ThingsBoard stores the numeric string "1013" as a number
    assert latest == {"temperature": 21.5, "humidity": 41, "pressure": 1013}
    assert [g["ts"] for g in tb_process.timeseries("sensor") if "humidity" in g["values"]] == [
        1700000000000,
        1700000001000,
    ]


def test_device_gets_session_limits_as_thingsboard_sends_them(device: TBDeviceMqttClient) -> None:
    replies: queue.Queue[Any] = queue.Queue()
    device.send_rpc_call("getSessionLimits", {"timeout": 5000}, lambda _id, reply, *_: replies.put(reply))
    assert replies.get(timeout=WAIT_S) == {
        "maxPayloadSize": 65536,
        "maxInflightMessages": 100,
        "rateLimits": {"messages": None, "telemetryMessages": None, "telemetryDataPoints": None},
    }


def test_device_attributes_publish_request_and_shared_updates(
    tb_process: EmulatorProcess, device: TBDeviceMqttClient
) -> None:
    assert device.send_attributes({"firmware": "1.2.0"}).get() == 0
    wait_until(lambda: tb_process.device("sensor")["clientAttributes"] == {"firmware": "1.2.0"}, WAIT_S)
    responses: queue.Queue[Any] = queue.Queue()
    device.request_attributes(["firmware"], ["interval"], lambda content, exc: responses.put(content))
    assert responses.get(timeout=WAIT_S) == {"client": {"firmware": "1.2.0"}, "shared": {"interval": 5}}
    updates: queue.Queue[Any] = queue.Queue()
    device.subscribe_to_attribute("interval", lambda content, *_: updates.put(content))
    tb_process.set_shared_attributes("sensor", {"interval": 10})
    assert updates.get(timeout=WAIT_S) == {"interval": 10}


def test_server_side_rpc_to_a_device_two_way_and_one_way(
    tb_process: EmulatorProcess, device: TBDeviceMqttClient
) -> None:
    seen: list[tuple[str, Any]] = []

    def on_rpc(request_id: str, content: dict[str, Any]) -> None:
        seen.append((request_id, content))
        if content["method"] == "getTemperature":
            device.send_rpc_reply(request_id, {"temperature": 22})

    device.set_server_side_rpc_request_handler(on_rpc)
    wait_until(lambda: tb_process.device("sensor")["rpcSessions"] == 1, WAIT_S)
    assert tb_process.send_rpc("sensor", "getTemperature", {"unit": "C"}) == (200, {"temperature": 22})
    assert tb_process.send_rpc("sensor", "blink", {}, oneway=True) == (200, None)
    wait_until(lambda: len(seen) == 2, WAIT_S)
    # request ids count from 0 per device; the body carries no id (JsonConverter, includeRequestId=false)
    assert seen == [
        ("0", {"method": "getTemperature", "params": {"unit": "C"}}),
        ("1", {"method": "blink", "params": {}}),
    ]
    records = {r["method"]: r for r in tb_process.rpc_states(device="sensor")}
    assert records["getTemperature"]["status"] == "SUCCESSFUL"
    assert records["getTemperature"]["response"] == '{"temperature":22}'  # the device's bytes, verbatim


def test_gateway_client_connects_sends_and_answers_rpc(
    tb_process: EmulatorProcess, gateway: TBGatewayMqttClient
) -> None:
    assert gateway.gw_connect_device("motor_01", "motor").get() == 0
    assert (
        gateway.gw_send_telemetry("motor_01", {"ts": 1700000000000, "values": {"roundsCompleted": 2}}).get()
        == 0
    )
    assert gateway.gw_send_attributes("motor_01", {"maxRpm": 120}).get() == 0
    assert wait_until(lambda: tb_process.latest_telemetry("motor_01"), WAIT_S) == {"roundsCompleted": 2}
    wait_until(lambda: tb_process.device("motor_01")["clientAttributes"] == {"maxRpm": 120}, WAIT_S)

    answers: queue.Queue[Any] = queue.Queue()
    gateway.gw_request_client_attributes("motor_01", ["maxRpm"], lambda content, exc: answers.put(content))
    # one key asked (the client sends "keys": [...]), one found: "value" (isMultipleAttributesRequest
    # is more than one key: DeviceActorMessageProcessor, JsonConverter.getJsonObjectForGateway)
    assert answers.get(timeout=WAIT_S) == {"id": 1, "device": "motor_01", "value": 120}

    updates: queue.Queue[Any] = queue.Queue()
    gateway.gw_subscribe_to_attribute("motor_01", "speed", lambda content: updates.put(content))
    tb_process.set_shared_attributes("motor_01", {"speed": 3})
    assert updates.get(timeout=WAIT_S) == {"device": "motor_01", "data": {"speed": 3}}

    def on_rpc(client: TBGatewayMqttClient, content: dict[str, Any]) -> None:
        client.gw_send_rpc_reply(
            content["device"], content["data"]["id"], {"echo": content["data"]["params"]}
        )

    gateway.gw_set_server_side_rpc_request_handler(on_rpc)
    assert tb_process.send_rpc("motor_01", "status", {"x": 1}) == (200, {"echo": {"x": 1}})


def test_dispatcher_rpc_reaches_the_gateway_and_the_reply_comes_back(
    tb_process: EmulatorProcess, gateway: TBGatewayMqttClient
) -> None:
    received: list[dict[str, Any]] = []

    def on_rpc(client: TBGatewayMqttClient, content: dict[str, Any]) -> None:
        received.append(content)
        params = content["data"]["params"]
        reply = {"accepted": True, "commandId": params["commandId"], "queuedRounds": params["rounds"]}
        client.gw_send_rpc_reply(content["device"], content["data"]["id"], reply, quality_of_service=1)

    gateway.gw_set_server_side_rpc_request_handler(on_rpc)
    assert gateway.gw_connect_device("motor_01", "motor").get() == 0
    dispatcher = TBDeviceMqttClient(tb_process.host, port=tb_process.mqtt_port, username=DISPATCHER_TOKEN)
    dispatcher.connect()
    try:
        replies: queue.Queue[Any] = queue.Queue()
        params = {"device": "motor_01", "commandId": "c-0123456789abcdef", "rounds": 10}
        dispatcher.send_rpc_call("rotate", params, lambda _id, reply, *_: replies.put(reply))
        assert replies.get(timeout=WAIT_S) == {
            "accepted": True,
            "commandId": "c-0123456789abcdef",
            "queuedRounds": 10,
        }
        assert received == [{"device": "motor_01", "data": {"id": 0, "method": "rotate", "params": params}}]

        # a motor nobody announced: the RPC waits for the sub-device until the chain's 20 s expire;
        # a motor that does not exist: the chain answers at once with the request itself (see docs)
        dispatcher.send_rpc_call(
            "rotate", {"device": "motor_99", "rounds": 1}, lambda _id, r, *_: replies.put(r)
        )
        assert replies.get(timeout=WAIT_S) == {
            "method": "rotate",
            "params": {"device": "motor_99", "rounds": 1},
        }
    finally:
        dispatcher.stop()
        dispatcher.disconnect()


def test_unknown_token_is_refused(tb_process: EmulatorProcess) -> None:
    refused = threading.Event()
    client = TBDeviceMqttClient(tb_process.host, port=tb_process.mqtt_port, username="wrong-token")

    def on_connect(_client: Any, _userdata: Any, _flags: Any, rc: Any, *_: Any) -> None:
        if rc != 0:
            refused.set()

    client.connect(callback=on_connect)
    try:
        assert refused.wait(WAIT_S)
        assert not client.is_connected()
    finally:
        client.stop()
        client.disconnect()
