"""The RPC path's polled queues of an in-memory ThingsBoard: the request reaches the session through the
transport notifications consumer, the device's (or gateway's) reply reaches the device actor through
the core queue's consumer. A consumer polling every 60 s holds what it has not polled yet for the whole
test (it went idle when the emulator started, so its next poll is a minute later)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import yaml

from devstack.tb_emulator.harness import (
    SHIPPED_COMPOSE,
    EmulatorProcess,
    InProcessEmulator,
    shipped_transport_queues,
)
from devstack.tb_emulator.hub import HubSettings
from devstack.tb_emulator.transport_queues import TransportQueueSettings
from tests.emulator.conftest import DEVICES, DISPATCHER_TOKEN, GATEWAY_TOKEN
from tests.emulator.test_rpc import connect, statuses

HELD_MS = 60_000  # a poll interval no test lives to see the end of


def emulator(queues: TransportQueueSettings) -> InProcessEmulator:
    return InProcessEmulator(DEVICES, hub_settings=HubSettings(transport_queues=queues))


@pytest.fixture
async def tb_transport_held() -> AsyncIterator[InProcessEmulator]:
    async with emulator(TransportQueueSettings(transport_poll_interval_ms=HELD_MS)) as tb:
        yield tb


@pytest.fixture
async def tb_core_held() -> AsyncIterator[InProcessEmulator]:
    async with emulator(TransportQueueSettings(core_poll_interval_ms=HELD_MS)) as tb:
        yield tb


@pytest.fixture
async def tb_default() -> AsyncIterator[InProcessEmulator]:
    async with emulator(TransportQueueSettings()) as tb:
        yield tb


def client(tb: InProcessEmulator) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=tb.http_url, timeout=30)


async def test_rpc_request_waits_for_the_transport_notifications_poll(
    tb_transport_held: InProcessEmulator,
) -> None:
    tb = tb_transport_held
    async with await connect(tb, "sensor-token", "v1/devices/me/rpc/request/+") as sensor, client(tb) as http:
        response = await http.post("/api/rpc/twoway/sensor", json={"method": "read", "timeout": 500})
        # the device actor had a subscribed session (so TIMEOUT, not NO_ACTIVE_CONNECTION), but the
        # request never left the notifications topic
        assert (response.status_code, response.json()) == (504, {"error": "TIMEOUT"})
        assert tb.hub.transport_queues.notifications.waiting == 1
        with pytest.raises(TimeoutError):
            await sensor.next_message(timeout_s=0.2)
    assert statuses(tb, "read") == ["QUEUED", "TIMEOUT"]  # never SENT: nothing was written


async def test_device_reply_waits_for_the_core_queues_poll(tb_core_held: InProcessEmulator) -> None:
    tb = tb_core_held
    async with await connect(tb, "sensor-token", "v1/devices/me/rpc/request/+") as sensor, client(tb) as http:
        call = asyncio.create_task(
            http.post("/api/rpc/twoway/sensor", json={"method": "read", "timeout": 800})
        )
        request = await sensor.next_message()
        sensor.puback(request.packet_id or 0)
        await sensor.publish("v1/devices/me/rpc/response/0", b'{"value": 7}')
        response = await call
        # answered in time, but the reply sat in the core partition: the device actor never saw it
        assert (response.status_code, response.json()) == (504, {"error": "TIMEOUT"})
        assert tb.hub.transport_queues.core.waiting == 1
    assert statuses(tb, "read")[-1] == "TIMEOUT"
    assert "SUCCESSFUL" not in statuses(tb, "read")


async def test_direct_rpc_passes_each_consumer_once(tb_default: InProcessEmulator) -> None:
    tb = tb_default
    queues = tb.hub.transport_queues
    async with await connect(tb, "sensor-token", "v1/devices/me/rpc/request/+") as sensor, client(tb) as http:
        call = asyncio.create_task(
            http.post("/api/rpc/twoway/sensor", json={"method": "read", "timeout": 5000})
        )
        request = await sensor.next_message()
        assert (queues.notifications.stats.msgs, queues.core.stats.msgs) == (1, 0)
        sensor.puback(request.packet_id or 0)
        await sensor.publish("v1/devices/me/rpc/response/0", b'{"value": 7}')
        response = await call
    assert (response.status_code, response.json()) == (200, {"value": 7})
    assert (queues.notifications.stats.msgs, queues.core.stats.msgs) == (1, 1)


async def test_gateway_rpc_passes_each_consumer_once(tb_default: InProcessEmulator) -> None:
    tb = tb_default
    queues = tb.hub.transport_queues
    async with await connect(tb, GATEWAY_TOKEN, "v1/gateway/rpc") as gw:
        await gw.publish("v1/gateway/connect", b'{"device": "motor_01", "type": "motor"}')
        async with await connect(tb, DISPATCHER_TOKEN, "v1/devices/me/rpc/response/+") as dispatcher:
            body = {
                "method": "rotate",
                "params": {"device": "motor_01", "commandId": "c-aaaaaaaaaa", "rounds": 1},
            }
            await dispatcher.publish("v1/devices/me/rpc/request/1", orjson.dumps(body))
            request = await gw.next_message()
            assert (queues.notifications.stats.msgs, queues.core.stats.msgs) == (1, 0)
            request_id = orjson.loads(request.payload)["data"]["id"]
            reply = {"device": "motor_01", "id": request_id, "data": {"accepted": True}}
            await gw.publish("v1/gateway/rpc", orjson.dumps(reply))
            answer = await dispatcher.next_message()
    assert answer.payload == b'{"accepted":true}'
    assert (queues.notifications.stats.msgs, queues.core.stats.msgs) == (1, 1)


def test_the_harness_runs_the_poll_intervals_the_deployment_sets() -> None:
    compose = yaml.safe_load(SHIPPED_COMPOSE.read_text())["services"]["thingsboard"]["environment"]
    shipped = shipped_transport_queues()
    assert shipped.core_poll_interval_ms == int(compose["TB_QUEUE_CORE_POLL_INTERVAL_MS"])
    assert shipped.transport_poll_interval_ms == int(
        compose["TB_QUEUE_TRANSPORT_NOTIFICATIONS_POLL_INTERVAL_MS"]
    )
    assert shipped != TransportQueueSettings()  # the deployment tunes them: a stock emulator would lie
    command = " ".join(EmulatorProcess().command())
    assert f"--core-poll-interval-ms {shipped.core_poll_interval_ms}" in command
    assert f"--transport-poll-interval-ms {shipped.transport_poll_interval_ms}" in command
    assert InProcessEmulator().hub.settings.transport_queues == shipped
