"""Server-side RPC semantics: offline hold, TIMEOUT vs NO_ACTIVE_CONNECTION, re-send on re-subscribe,
persistent RPC statuses, delivery retries, and the dispatcher path's errors."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import orjson
import pytest

from devstack.tb_emulator.harness import InProcessEmulator
from devstack.tb_emulator.hub import HubSettings
from devstack.tb_emulator.raw_client import RawMqttClient
from tests.emulator.conftest import DEVICES, DISPATCHER_TOKEN, GATEWAY_TOKEN, chain_with_rpc_timeout
from tests.waiting import wait_until


async def connect(tb: InProcessEmulator, token: str, *subs: str) -> RawMqttClient:
    client = RawMqttClient(tb.host, tb.mqtt_port)
    assert (await client.connect(token)).reason_code == 0
    if subs:
        await client.subscribe(*subs)
    return client


def statuses(tb: InProcessEmulator, method: str) -> list[str]:
    [record] = [r for r in tb.hub.rpc.records.values() if r.method == method]
    return [status for status, _ in record.history]


async def test_rpc_to_offline_device_is_held_and_delivered_on_subscribe(
    tb_fast: InProcessEmulator, http: httpx.AsyncClient
) -> None:
    call = asyncio.create_task(http.post("/api/rpc/twoway/sensor", json={"method": "read", "timeout": 5000}))
    await asyncio.sleep(0.2)
    async with await connect(tb_fast, "sensor-token", "v1/devices/me/rpc/request/+") as sensor:
        request = await sensor.next_message()
        assert (request.topic, request.payload) == (
            "v1/devices/me/rpc/request/0",
            b'{"method":"read","params":{}}',
        )
        sensor.puback(request.packet_id or 0)
        await sensor.publish("v1/devices/me/rpc/response/0", b'{"value": 7}')
        response = await call
    assert (response.status_code, response.json()) == (200, {"value": 7})
    assert statuses(tb_fast, "read") == ["QUEUED", "SENT", "DELIVERED", "SUCCESSFUL"]


async def test_never_delivered_is_no_active_connection_and_unanswered_is_timeout(
    tb_fast: InProcessEmulator, http: httpx.AsyncClient
) -> None:
    offline = await http.post("/api/rpc/twoway/sensor", json={"method": "a", "timeout": 300})
    assert (offline.status_code, offline.json()) == (504, {"error": "NO_ACTIVE_CONNECTION"})
    async with await connect(tb_fast, "sensor-token", "v1/devices/me/rpc/request/+") as sensor:
        silent = await http.post("/api/rpc/twoway/sensor", json={"method": "b", "timeout": 300})
        assert (silent.status_code, silent.json()) == (504, {"error": "TIMEOUT"})
        assert (await sensor.next_message()).payload == b'{"method":"b","params":{}}'


async def test_pending_rpc_is_resent_on_every_resubscribe_with_the_same_id(
    tb_fast: InProcessEmulator,
) -> None:
    async with await connect(tb_fast, GATEWAY_TOKEN, "v1/gateway/rpc") as gw:
        await gw.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
        async with await connect(tb_fast, DISPATCHER_TOKEN, "v1/devices/me/rpc/response/+") as dispatcher:
            body = {
                "method": "rotate",
                "params": {"device": "motor_01", "commandId": "c-aaaaaaaaaa", "rounds": 1},
            }
            await dispatcher.publish("v1/devices/me/rpc/request/1", orjson.dumps(body))
            first = await gw.next_message()
            await gw.close()  # the link drops before the Pi replies
            async with await connect(tb_fast, GATEWAY_TOKEN, "v1/gateway/rpc") as gw2:
                # sub-devices are not re-announced; the next gateway message connects motor_01 again
                await gw2.publish("v1/gateway/telemetry", b'{"motor_01": [{"heartbeat": 1}]}')
                again = await gw2.next_message()
                assert again.payload == first.payload  # same request id 0: dedupe on commandId
                await gw2.publish(
                    "v1/gateway/rpc", b'{"device": "motor_01", "id": 0, "data": {"accepted": true}}'
                )
                reply = await dispatcher.next_message()
    assert orjson.loads(first.payload)["data"]["id"] == 0
    assert reply.payload == b'{"accepted":true}'


async def test_dispatcher_gets_rpc_node_errors_and_client_timeout(tb_fast: InProcessEmulator) -> None:
    async with await connect(tb_fast, DISPATCHER_TOKEN, "v1/devices/me/rpc/response/+") as dispatcher:
        body = {
            "method": "rotate",
            "params": {"device": "motor_02", "commandId": "c-bbbbbbbbbb", "rounds": 1},
        }
        await dispatcher.publish("v1/devices/me/rpc/request/2", orjson.dumps(body))
        reply = await dispatcher.next_message(timeout_s=5)
        assert (reply.topic, reply.payload) == (
            "v1/devices/me/rpc/response/2",
            b'{"error":"NO_ACTIVE_CONNECTION"}',
        )
        async with await connect(tb_fast, GATEWAY_TOKEN, "v1/gateway/rpc") as gw:
            await gw.publish("v1/gateway/connect", b'{"device": "motor_02", "type": "motor"}')
            await dispatcher.publish("v1/devices/me/rpc/request/3", orjson.dumps(body))
            assert (await gw.next_message()).topic == "v1/gateway/rpc"
            reply = await dispatcher.next_message(timeout_s=5)
            assert reply.payload == b'{"error":"TIMEOUT"}'
        # no such device: change originator fails and the chain replies with the request itself
        await dispatcher.publish(
            "v1/devices/me/rpc/request/4", b'{"method": "x", "params": {"device": "nope"}}'
        )
        reply = await dispatcher.next_message(timeout_s=5)
        assert (reply.topic, reply.payload) == (
            "v1/devices/me/rpc/response/4",
            b'{"method":"x","params":{"device":"nope"}}',
        )


async def test_client_rpc_without_reply_times_out(tmp_path: Path) -> None:
    switch = {"type": "org.thingsboard.rule.engine.filter.TbMsgTypeSwitchNode", "name": "switch"}
    chain = {
        "ruleChain": {"name": "no replies"},
        "metadata": {"firstNodeIndex": 0, "connections": [], "nodes": [switch]},
    }
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(chain))
    settings = HubSettings(client_rpc_timeout_s=0.3)
    async with (
        InProcessEmulator(DEVICES, rule_chain=path, hub_settings=settings) as tb,
        await connect(tb, DISPATCHER_TOKEN) as dispatcher,  # no subscription: answered anyway
    ):
        await dispatcher.publish("v1/devices/me/rpc/request/9", b'{"method": "rotate", "params": {}}')
        reply = await dispatcher.next_message(timeout_s=5)
    assert (reply.topic, reply.payload, reply.qos) == (
        "v1/devices/me/rpc/response/9",
        b'{"error":"timeout"}',
        1,
    )


async def test_persistent_rpc_states_direct_device_and_gateway(
    tb_fast: InProcessEmulator, http: httpx.AsyncClient
) -> None:
    async with await connect(tb_fast, "sensor-token", "v1/devices/me/rpc/request/+") as sensor:
        call = asyncio.create_task(
            http.post("/api/rpc/twoway/sensor", json={"method": "p", "persistent": True, "timeout": 5000})
        )
        request = await sensor.next_message()
        rpc_id = (await call).json()["rpcId"]  # persistent: the caller gets the id at once
        sensor.puback(request.packet_id or 0)
        await sensor.publish("v1/devices/me/rpc/response/0", b'{"done": true}')
        await tb_fast.settled()  # the reply reaches the device actor through the core queue
        record = (await http.get(f"/api/rpc/{rpc_id}")).json()
    assert [h["status"] for h in record["history"]] == ["QUEUED", "SENT", "DELIVERED", "SUCCESSFUL"]
    assert (record["persistent"], record["response"]) == (True, '{"done": true}')

    async with await connect(tb_fast, GATEWAY_TOKEN, "v1/gateway/rpc") as gw:
        await gw.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
        body = {"method": "g", "persistent": True, "timeout": 5000}
        rpc_id = (await http.post("/api/rpc/twoway/motor_01", json=body)).json()["rpcId"]
        request = await gw.next_message()
        gw.puback(request.packet_id or 0)
        await gw.publish("v1/gateway/rpc", b'{"device": "motor_01", "id": 0, "data": {"ok": 1}}')
        await tb_fast.settled()
        record = (await http.get(f"/api/rpc/{rpc_id}")).json()
    # ThingsBoard never tracks the gateway's PUBACK: no DELIVERED (thingsboard#15884)
    assert [h["status"] for h in record["history"]] == ["QUEUED", "SENT", "SUCCESSFUL"]


async def test_persistent_rpc_expires_and_fails_after_delivery_retries(
    tb_fast: InProcessEmulator, http: httpx.AsyncClient
) -> None:
    expired = await http.post(
        "/api/rpc/oneway/sensor", json={"method": "e", "persistent": True, "timeout": 200}
    )
    await asyncio.sleep(0.4)
    assert (await http.get(f"/api/rpc/{expired.json()['rpcId']}")).json()["status"] == "EXPIRED"
    async with await connect(tb_fast, "sensor-token", "v1/devices/me/rpc/request/+") as sensor:
        body = {"method": "f", "persistent": True, "timeout": 5000, "retries": 1}
        rpc_id = (await http.post("/api/rpc/twoway/sensor", json=body)).json()["rpcId"]
        await sensor.next_message()  # never PUBACKed: delivery times out (MQTT_TIMEOUT, 0.3 s here)
        await asyncio.sleep(0.5)
        assert (await http.post("/api/faults/redeliver-rpc/sensor")).json() == {"redelivered": 1}
        await sensor.next_message()
        await asyncio.sleep(0.5)
        record = (await http.get(f"/api/rpc/{rpc_id}")).json()
    assert [h["status"] for h in record["history"]] == ["QUEUED", "SENT", "TIMEOUT", "SENT", "FAILED"]
    assert "retry attempts have been exhausted" in record["error"]


async def test_oneway_rpc_is_done_once_written(tb_fast: InProcessEmulator, http: httpx.AsyncClient) -> None:
    async with await connect(tb_fast, "sensor-token", "v1/devices/me/rpc/request/+") as sensor:
        response = await http.post("/api/rpc/oneway/sensor", json={"method": "blink", "params": {"n": 2}})
        assert (response.status_code, response.json()) == (200, None)
        assert (await sensor.next_message()).payload == b'{"method":"blink","params":{"n":2}}'


@pytest.mark.parametrize("kind", ["twoway", "oneway"])
async def test_rpc_to_unknown_device_is_404(http: httpx.AsyncClient, kind: str) -> None:
    response = await http.post(f"/api/rpc/{kind}/no_such_device", json={"method": "x"})
    assert response.status_code == 404


async def test_persistent_rpc_waits_for_an_offline_gateway_and_is_delivered_on_reconnect(
    tb_fast: InProcessEmulator, http: httpx.AsyncClient
) -> None:
    body = {
        "method": "rotate",
        "params": {"commandId": "c-dddddddddd", "rounds": 2},
        "persistent": True,
        "timeout": 5000,
    }
    rpc_id = (await http.post("/api/rpc/twoway/motor_01", json=body)).json()["rpcId"]
    assert (await http.get(f"/api/rpc/{rpc_id}")).json()["status"] == "QUEUED"
    async with await connect(tb_fast, GATEWAY_TOKEN, "v1/gateway/rpc") as gw:
        await gw.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
        request = orjson.loads((await gw.next_message()).payload)
        assert request == {
            "device": "motor_01",
            "data": {"id": 0, "method": "rotate", "params": body["params"]},
        }
        reply = {"device": "motor_01", "id": 0, "data": {"accepted": True}}
        await gw.publish("v1/gateway/rpc", orjson.dumps(reply))
        await tb_fast.settled()
        record = (await http.get(f"/api/rpc/{rpc_id}")).json()
    assert [h["status"] for h in record["history"]] == ["QUEUED", "SENT", "SUCCESSFUL"]
    assert record["response"] == '{"accepted":true}'


async def test_reconnecting_an_already_connected_sub_device_does_not_resend(
    tb_fast: InProcessEmulator, http: httpx.AsyncClient
) -> None:
    async with await connect(tb_fast, GATEWAY_TOKEN, "v1/gateway/rpc") as gw:
        await gw.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
        call = asyncio.create_task(
            http.post("/api/rpc/twoway/motor_01", json={"method": "m", "timeout": 3000})
        )
        first = await gw.next_message()
        await gw.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
        with pytest.raises(TimeoutError):
            await gw.next_message(timeout_s=0.3)
        await gw.publish("v1/gateway/disconnect", b'{"device": "motor_01"}')
        await gw.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
        assert (await gw.next_message()).payload == first.payload  # a new sub-device session: re-sent
        await gw.publish("v1/gateway/rpc", b'{"device": "motor_01", "id": 0, "data": {"ok": true}}')
        assert (await call).json() == {"ok": True}


def rotate(command_id: str, device: str = "motor_01") -> bytes:
    return orjson.dumps(
        {"method": "rotate", "params": {"device": device, "commandId": command_id, "rounds": 1}}
    )


async def test_sent_is_fixed_on_arrival_so_a_request_pushed_to_a_later_session_ends_no_active_connection(
    tb_fast: InProcessEmulator,
) -> None:
    """ToDeviceRpcRequestMetadata.sent is final: a re-send on subscribe does not make it TIMEOUT."""
    async with await connect(tb_fast, DISPATCHER_TOKEN, "v1/devices/me/rpc/response/+") as dispatcher:
        await dispatcher.publish("v1/devices/me/rpc/request/1", rotate("c-eeeeeeeeee"))
        # the request reaches the motor's actor once the rule-engine queue's consumer has polled it
        await wait_until(lambda: any(r.method == "rotate" for r in tb_fast.hub.rpc.records.values()))
        async with await connect(tb_fast, GATEWAY_TOKEN, "v1/gateway/rpc") as gw:
            await gw.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
            pushed = orjson.loads((await gw.next_message()).payload)  # the motor gets it, never answers
            reply = await dispatcher.next_message(timeout_s=5)
    assert pushed["data"]["params"]["commandId"] == "c-eeeeeeeeee"
    assert (reply.topic, reply.payload) == (
        "v1/devices/me/rpc/response/1",
        b'{"error":"NO_ACTIVE_CONNECTION"}',
    )
    assert statuses(tb_fast, "rotate") == ["QUEUED", "SENT", "EXPIRED"]


async def test_burst_sends_a_second_rpc_at_once_and_every_pending_one_on_subscribe(tmp_path: Path) -> None:
    """Submit strategy BURST (ThingsBoard's default): nothing queues behind a pending request."""
    chain = chain_with_rpc_timeout(tmp_path, 30)
    async with (
        InProcessEmulator(DEVICES, rule_chain=chain) as tb,
        await connect(tb, DISPATCHER_TOKEN, "v1/devices/me/rpc/response/+") as dispatcher,
    ):
        # offline: both wait in the device actor, and both go out when the motor connects
        for n, command_id in ((1, "c-1111111111"), (2, "c-2222222222")):
            await dispatcher.publish(f"v1/devices/me/rpc/request/{n}", rotate(command_id))
        async with await connect(tb, GATEWAY_TOKEN, "v1/gateway/rpc") as gw:
            await gw.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
            pushed = [orjson.loads((await gw.next_message()).payload)["data"] for _ in range(2)]
            # online, the first unanswered: a third goes out at once
            await dispatcher.publish("v1/devices/me/rpc/request/3", rotate("c-3333333333"))
            third = orjson.loads((await gw.next_message()).payload)["data"]
    assert [(d["id"], d["params"]["commandId"]) for d in pushed] == [(0, "c-1111111111"), (1, "c-2222222222")]
    assert (third["id"], third["params"]["commandId"]) == (2, "c-3333333333")


async def test_the_chains_answer_still_comes_after_the_transports_timeout(tmp_path: Path) -> None:
    """DefaultTransportService: the client RPC's timeout answers {"error":"timeout"}, and the chain's
    answer that comes later is still delivered on the session (only the pending entry is gone)."""
    settings = HubSettings(client_rpc_timeout_s=0.3)
    async with (
        InProcessEmulator(
            DEVICES, rule_chain=chain_with_rpc_timeout(tmp_path, 1), hub_settings=settings
        ) as tb,
        await connect(tb, DISPATCHER_TOKEN, "v1/devices/me/rpc/response/+") as dispatcher,
    ):
        await dispatcher.publish("v1/devices/me/rpc/request/7", rotate("c-7777777777"))  # motor offline
        first = await dispatcher.next_message(timeout_s=5)
        second = await dispatcher.next_message(timeout_s=5)
    assert [(m.topic, m.payload) for m in (first, second)] == [
        ("v1/devices/me/rpc/response/7", b'{"error":"timeout"}'),
        ("v1/devices/me/rpc/response/7", b'{"error":"NO_ACTIVE_CONNECTION"}'),
    ]
