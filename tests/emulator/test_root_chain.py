"""ThingsBoard's stock root rule chain (devstack/tb_emulator/chains/, copied from thingsboard/thingsboard
@v4.3.0.1) loads and routes as the chain says, on every ThingsBoard version the emulator follows:
telemetry and client attributes are saved, a REST RPC reaches the device through "RPC Call Request",
a device's own RPC and everything else only reach the log nodes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from structlog.testing import capture_logs

from devstack.tb_emulator.chains import STOCK_ROOT_CHAIN
from devstack.tb_emulator.harness import InProcessEmulator
from devstack.tb_emulator.hub import HubSettings
from devstack.tb_emulator.raw_client import RawMqttClient
from devstack.tb_emulator.rule_engine import ChainError
from devstack.tb_emulator.versions import TbVersion
from tests.waiting import wait_until

TOKEN = "thermo-token"
DEVICES = [{"name": "thermo", "token": TOKEN}]  # profile "default": no rule chain of its own -> root
CLIENT_RPC_TIMEOUT_S = 1.0


@pytest.fixture(params=list(TbVersion), ids=lambda v: f"tb{v.value}")
async def tb(request: pytest.FixtureRequest) -> AsyncIterator[InProcessEmulator]:
    settings = HubSettings(thingsboard_version=request.param, client_rpc_timeout_s=CLIENT_RPC_TIMEOUT_S)
    async with InProcessEmulator(DEVICES, rule_chain=STOCK_ROOT_CHAIN, hub_settings=settings) as emulator:
        yield emulator


def root_failures(tb: InProcessEmulator) -> int:
    return tb.hub.chains["Root Rule Chain"].failures


async def test_the_stock_root_chain_is_the_root_and_saves_telemetry_and_attributes(
    tb: InProcessEmulator,
) -> None:
    assert tb.hub.root_chain_name == "Root Rule Chain"
    device = tb.hub.registry.by_name["thermo"]
    async with RawMqttClient(tb.host, tb.mqtt_port) as client:
        await client.connect(TOKEN)
        assert await client.publish("v1/devices/me/telemetry", b'{"temperature": 21.5}') == 0
        ts_group = {"ts": 1700000000000, "values": {"humidity": 40}}
        assert await client.publish("v1/devices/me/telemetry", orjson.dumps(ts_group)) == 0
        assert await client.publish("v1/devices/me/attributes", b'{"firmware": "1.2.0"}') == 0
        await wait_until(
            lambda: (
                {"temperature", "humidity"} <= set(device.latest) and "firmware" in device.client_attributes
            ),
            what="telemetry and client attributes saved",
        )
    assert device.latest["humidity"] == (1700000000000, 40)
    assert device.latest["temperature"][1] == 21.5
    assert device.client_attributes == {"firmware": "1.2.0"}
    assert root_failures(tb) == 0


async def test_a_rest_rpc_reaches_the_device_through_rpc_call_request(tb: InProcessEmulator) -> None:
    async with (
        RawMqttClient(tb.host, tb.mqtt_port) as client,
        httpx.AsyncClient(base_url=tb.http_url, timeout=10) as http,
    ):
        await client.connect(TOKEN)
        await client.subscribe("v1/devices/me/rpc/request/+")
        call = asyncio.create_task(
            http.post("/api/rpc/twoway/thermo", json={"method": "getState", "params": {"verbose": True}})
        )
        request = await client.next_message()
        assert request.topic.startswith("v1/devices/me/rpc/request/")
        assert json.loads(request.payload) == {"method": "getState", "params": {"verbose": True}}
        request_id = request.topic.rsplit("/", 1)[1]
        assert await client.publish(f"v1/devices/me/rpc/response/{request_id}", b'{"state": "idle"}') == 0
        response = await call
    assert (response.status_code, response.json()) == (200, {"state": "idle"})
    assert root_failures(tb) == 0


async def test_a_device_rpc_reaches_only_its_log_node(tb: InProcessEmulator) -> None:
    """ "RPC Request from Device" goes to "Log RPC from Device": nothing answers it, so the device gets
    the transport's timeout. A persistent RPC's status messages leave the switch by "RPC Queued",
    "RPC Sent", ... (TbMsgType), which the stock chain does not connect: they end there, unlogged."""
    device = tb.hub.registry.by_name["thermo"]
    with capture_logs() as logs:
        async with (
            RawMqttClient(tb.host, tb.mqtt_port) as client,
            httpx.AsyncClient(base_url=tb.http_url, timeout=10) as http,
        ):
            await client.connect(TOKEN)
            await client.subscribe("v1/devices/me/rpc/response/+")
            rpc = b'{"method": "getTime", "params": {}}'
            assert await client.publish("v1/devices/me/rpc/request/7", rpc) == 0
            answer = await client.next_message(timeout_s=CLIENT_RPC_TIMEOUT_S + 5)
            assert (answer.topic, json.loads(answer.payload)) == (
                "v1/devices/me/rpc/response/7",
                {"error": "timeout"},
            )
            queued = await http.post(
                "/api/rpc/oneway/thermo", json={"method": "reboot", "params": {}, "persistent": True}
            )
            assert queued.status_code == 200
            rpc_id = queued.json()["rpcId"]
            await wait_until(
                lambda: tb.hub.rpc.records[rpc_id].status.value == "QUEUED", what="the persistent RPC queued"
            )
    [rpc_log] = _logged(logs, "Incoming message")
    assert rpc_log.startswith("\nIncoming message:\n{")
    assert "\nIncoming metadata:\n" in rpc_log
    assert '"method":"getTime"' in rpc_log
    assert '"requestId":"7"' in rpc_log
    assert not device.latest
    assert not device.client_attributes
    assert root_failures(tb) == 0


def _logged(logs: list[MutableMapping[str, Any]], fragment: str) -> list[str]:
    return [entry["event"] for entry in logs if fragment in entry["event"]]


def test_a_log_node_with_a_script_of_its_own_is_refused_at_start(tmp_path: Path) -> None:
    chain = json.loads(STOCK_ROOT_CHAIN.read_text())
    log_node = next(n for n in chain["metadata"]["nodes"] if n["name"] == "Log Other")
    log_node["configuration"]["tbelScript"] = "return msg.temperature;"
    with pytest.raises(ChainError, match=r"'Log Other'.*script other than the default"):
        InProcessEmulator(DEVICES, rule_chain=_write(tmp_path, chain))


def test_a_log_node_configuration_with_an_unknown_field_is_refused(tmp_path: Path) -> None:
    chain = json.loads(STOCK_ROOT_CHAIN.read_text())
    log_node = next(n for n in chain["metadata"]["nodes"] if n["name"] == "Log Other")
    log_node["configuration"]["level"] = "DEBUG"  # TbLogNodeConfiguration has no such property
    with pytest.raises(ChainError, match=r"'Log Other'.*Unrecognized field \"level\""):
        InProcessEmulator(DEVICES, rule_chain=_write(tmp_path, chain))


def _write(tmp_path: Path, chain: dict[str, Any]) -> Path:
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(chain))
    return path
