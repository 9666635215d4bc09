"""Emulator fixtures: an in-process emulator per test (fast) and raw MQTT clients against it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.tb_emulator.harness import EmulatorProcess, InProcessEmulator
from devstack.tb_emulator.hub import HubSettings
from devstack.tb_emulator.server import SHIPPED_CHAIN

DISPATCHER_TOKEN = "dispatcher-dev-token"
GATEWAY_TOKEN = "pi-gateway-01-dev-token"
DEVICES: list[dict[str, Any]] = [
    {"name": "dispatcher", "token": DISPATCHER_TOKEN, "type": "dispatcher"},
    {"name": "pi-gateway-01", "token": GATEWAY_TOKEN, "type": "gateway", "gateway": True},
    {"name": "motor_01", "type": "motor"},
    {"name": "motor_02", "type": "motor"},
    {"name": "sensor", "token": "sensor-token", "type": "thermometer", "shared_attributes": {"interval": 5}},
]


@pytest.fixture
async def tb() -> AsyncIterator[InProcessEmulator]:
    settings = HubSettings(client_rpc_timeout_s=3.0, delivery_timeout_s=1.0)
    async with InProcessEmulator(DEVICES, hub_settings=settings) as emulator:
        yield emulator


@pytest.fixture
def tb_process() -> Iterator[EmulatorProcess]:
    """The emulator as a real child process, for clients that block (paho threads) or crash tests."""
    with EmulatorProcess(DEVICES, extra_args=("--client-rpc-timeout-s", "5")) as emulator:
        yield emulator


def chain_with_rpc_timeout(tmp_path: Path, timeout_s: int) -> Path:
    """The shipped chain with a shorter "RPC to motor" timeout, so expiry tests take a second."""
    chain = json.loads(SHIPPED_CHAIN.read_text())
    for node in chain["metadata"]["nodes"]:
        if node["type"].endswith("TbSendRPCRequestNode"):
            node["configuration"]["timeoutInSeconds"] = timeout_s
    path = tmp_path / "chain.json"
    path.write_text(json.dumps(chain))
    return path


@pytest.fixture
async def tb_fast(tmp_path: Path) -> AsyncIterator[InProcessEmulator]:
    """RPC node timeout 1 s, client RPC timeout 2 s, RPC delivery (PUBACK) timeout 0.3 s."""
    settings = HubSettings(client_rpc_timeout_s=2.0, delivery_timeout_s=0.3)
    async with InProcessEmulator(
        DEVICES, rule_chain=chain_with_rpc_timeout(tmp_path, 1), hub_settings=settings
    ) as tb:
        yield tb


@pytest.fixture
async def http(tb_fast: InProcessEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=tb_fast.http_url, timeout=30) as client:
        yield client
