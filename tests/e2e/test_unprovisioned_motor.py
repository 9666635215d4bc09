"""A motor nobody created in ThingsBoard beforehand still turns and reports, end to end.

ThingsBoard creates a gateway's unknown sub-device with the type the gateway announces, on the device
profile of that name, and routes it by that profile's rule chain. The edge announces "motor" (the
profile `giftwheel tb provision` points at the giftwheel chain), so the motor's telemetry reaches the
cloud webhook and the command closes. Real processes throughout (devstack.stack.LocalStack).
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from redis.asyncio import Redis

from cloud.ledger import CommandState, Ledger
from devstack.edge_process import SimMotor
from devstack.stack import LocalStack, StackOptions
from devstack.tb_emulator.devices import load_devices_file
from devstack.tb_emulator.harness import SHIPPED_DEVICES
from giftwheel.contracts import EVENTS_STREAM
from giftwheel.contracts.motor import MOTOR_PROFILE
from tests.ingest.conftest import gift
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

MOTOR = SimMotor("motor_09", "a4988", {"step": 17, "dir": 27, "enable": 22}, 200, 1, 2000)
ROUNDS = 5


async def test_a_motor_thingsboard_first_meets_through_the_gateway_turns_and_reports(tmp_path: Path) -> None:
    assert MOTOR.name not in {d.name for d in load_devices_file(SHIPPED_DEVICES).devices}
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump({"version": 1, "default_device": MOTOR.name, "rules": []}))
    stack = LocalStack(tmp_path, StackOptions(workers=1, motors=(MOTOR,), rules=rules))
    with stack:
        created = stack.tb.device(MOTOR.name)
        assert (created["type"], created["createdByGateway"]) == (MOTOR_PROFILE, "pi-gateway-01")
        cloud = Redis.from_url(stack.cloud_redis.url)
        ledger = Ledger(cloud, streams=[EVENTS_STREAM], ttl_s=3600)
        try:
            async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as client:
                event = gift(eventId="tiktok:unprovisioned-1", giftName="Lion", diamond=ROUNDS, quantity=1)
                headers = {"Authorization": f"Bearer {stack.options.api_key}"}
                assert (await client.post("/v1/events", json=event, headers=headers)).status_code == 202

            async def done() -> bool:
                command_id = (await ledger.decisions(EVENTS_STREAM, ["tiktok:unprovisioned-1"])).get(
                    "tiktok:unprovisioned-1"
                )
                command = None if command_id is None else await ledger.get(EVENTS_STREAM, command_id)
                return command is not None and command.state is CommandState.DONE

            await wait_until(done, 60, "the command closed by the motor's done report")
            totals = await ledger.device_totals(MOTOR.name)
            assert (totals.done, totals.failed, totals.outstanding) == (ROUNDS, 0, 0)
            assert stack.rounds_turned(MOTOR) == ROUNDS
        finally:
            await cloud.aclose()
