"""Emulator fixtures: an in-process emulator per test (fast) and raw MQTT clients against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from devstack.tb_emulator.harness import EmulatorProcess, InProcessEmulator
from devstack.tb_emulator.hub import HubSettings

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
