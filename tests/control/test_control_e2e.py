"""Stop, hold, resume and cancel through the real pipeline: API-side ControlClient -> control stream
-> `giftwheel worker` -> ThingsBoard emulator (shipped chain) -> `giftwheel edge` on simulated motors.

One stack for the module (devstack.stack.LocalStack, real processes). What turned is read from the
edge's own step record (one line per pulse); what the cloud decided from its ledger.
"""

from __future__ import annotations

import asyncio
import itertools

import httpx
import pytest
from redis.asyncio import Redis

from cloud.control.client import ControlClient
from cloud.ledger import Command, CommandState, DeviceTotals, Ledger
from devstack.edge_process import SimMotor
from devstack.stack import LocalStack
from giftwheel.contracts import EVENTS_STREAM
from giftwheel.contracts.control import (
    ALL_MOTORS,
    HOLDS_KEY,
    ControlAction,
    ControlOutcome,
    ControlRequest,
    new_request_id,
)
from tests.ingest.conftest import gift
from tests.local_stack import cloud, stack, stack_options
from tests.waiting import wait_until

__all__ = ["cloud", "stack", "stack_options"]  # the module's local stack and its cloud Redis
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

MAIN, SMALL = "motor_01", "motor_02"  # demo rules: roses turn motor_02, any other gift motor_01
_ids = itertools.count(1)


def motor(stack: LocalStack, name: str) -> SimMotor:
    return next(m for m in stack.options.motors if m.name == name)


async def control(cloud: Redis, action: ControlAction, device: str, reason: str = "") -> ControlOutcome:
    request = ControlRequest(
        request_id=new_request_id(), action=action, device=device, by="ops-test", reason=reason, at_ms=1
    )
    return await ControlClient(cloud).submit(request, timeout_s=60)


async def send_gifts(stack: LocalStack, device: str, rounds: list[int]) -> list[str]:
    """Gifts for one motor, their eventIds."""
    ids = []
    async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as client:
        for n in rounds:
            event_id = f"tiktok:control-{next(_ids)}"
            name = "Rose" if device == SMALL else "Lion"
            event = gift(eventId=event_id, giftName=name, diamond=n, quantity=1)
            reply = await client.post(
                "/v1/events", json=event, headers={"Authorization": f"Bearer {stack.options.api_key}"}
            )
            assert reply.status_code == 202, reply.text
            ids.append(event_id)
    return ids


async def commands_of(ledger: Ledger, event_ids: list[str]) -> list[Command]:
    """The commands carrying these events, once every event has one."""
    decided = await ledger.decisions(EVENTS_STREAM, event_ids)
    if len(decided) < len(event_ids):
        return []
    found = await ledger.get_many(EVENTS_STREAM, sorted(set(decided.values())))
    return [c for c in found if c is not None]


async def wait_states(ledger: Ledger, event_ids: list[str], state: CommandState, what: str) -> list[Command]:
    async def reached() -> bool:
        commands = await commands_of(ledger, event_ids)
        return bool(commands) and all(c.state is state for c in commands)

    await wait_until(reached, 60, what)
    return await commands_of(ledger, event_ids)


async def still(stack: LocalStack, name: str) -> float:
    """The rounds a motor has turned, once its step record stops growing."""
    turned = stack.rounds_turned(motor(stack, name))
    while True:
        await asyncio.sleep(0.5)
        now = stack.rounds_turned(motor(stack, name))
        if now == turned:
            return now
        turned = now


def balanced(totals: DeviceTotals) -> bool:
    parts = totals.done + totals.held + totals.cancelled + totals.failed + totals.outstanding
    return totals.accepted == parts and totals.outstanding >= 0


async def test_held_gifts_wait_and_a_resume_turns_each_exactly_once(stack: LocalStack, cloud: Redis) -> None:
    ledger = Ledger(cloud, streams=[EVENTS_STREAM], ttl_s=3600)
    held = await control(cloud, ControlAction.HOLD, SMALL, "refill")
    assert held.ok, held
    assert held.motors[0].edge is not None
    assert held.motors[0].edge["state"] == "held"
    assert await cloud.hexists(HOLDS_KEY, SMALL)
    before = await still(stack, SMALL)

    event_ids = await send_gifts(stack, SMALL, [2, 3, 4])
    commands = await wait_states(ledger, event_ids, CommandState.HELD, "the gifts recorded held")
    assert sum(c.attempts for c in commands) == 0  # never sent
    await asyncio.sleep(1)
    assert stack.rounds_turned(motor(stack, SMALL)) == before
    assert (await ledger.device_totals(SMALL)).held == 9

    resumed = await control(cloud, ControlAction.RESUME, SMALL)
    assert resumed.ok, resumed
    assert resumed.motors[0].requeued_commands == len(commands)
    assert not await cloud.hexists(HOLDS_KEY, SMALL)
    done = await wait_states(ledger, event_ids, CommandState.DONE, "the held gifts turned")
    assert {c.command_id for c in done} == {c.command_id for c in commands}  # the same commands
    assert await still(stack, SMALL) == before + 9
    totals = await ledger.device_totals(SMALL)
    assert totals.held == 0
    assert balanced(totals)


async def test_a_command_held_mid_way_turns_its_remainder_once(stack: LocalStack, cloud: Redis) -> None:
    ledger = Ledger(cloud, streams=[EVENTS_STREAM], ttl_s=3600)
    before = await still(stack, MAIN)
    (event_id,) = await send_gifts(stack, MAIN, [500])  # 5 s of turning at the stack's time scale
    await wait_until(lambda: stack.rounds_turned(motor(stack, MAIN)) > before + 50, 30, "the motor turning")
    held = await control(cloud, ControlAction.HOLD, MAIN)
    assert held.ok, held
    stopped_at = await still(stack, MAIN)
    assert before < stopped_at < before + 500

    resumed = await control(cloud, ControlAction.RESUME, MAIN)
    assert resumed.ok, resumed
    await wait_states(ledger, [event_id], CommandState.DONE, "the interrupted command finished")
    assert await still(stack, MAIN) == before + 500


async def test_cancel_records_who_and_why_and_the_ledger_balances(stack: LocalStack, cloud: Redis) -> None:
    ledger = Ledger(cloud, streams=[EVENTS_STREAM], ttl_s=3600)
    refused = await control(cloud, ControlAction.CANCEL, SMALL, "nothing held")
    assert not refused.ok
    assert refused.refused is not None

    assert (await control(cloud, ControlAction.HOLD, SMALL)).ok
    before = await still(stack, SMALL)
    event_ids = await send_gifts(stack, SMALL, [5, 6])
    await wait_states(ledger, event_ids, CommandState.HELD, "the gifts recorded held")
    cancelled = await control(cloud, ControlAction.CANCEL, SMALL, "wheel jammed")
    assert cancelled.ok, cancelled
    assert cancelled.motors[0].cancelled_commands == 2
    for command in await wait_states(ledger, event_ids, CommandState.CANCELLED, "cancelled"):
        assert (command.cancelled_by, command.cancel_reason) == ("ops-test", "wheel jammed")
    assert await cloud.hexists(HOLDS_KEY, SMALL)  # cancel keeps the hold
    assert (await control(cloud, ControlAction.RESUME, SMALL)).ok
    await asyncio.sleep(1)
    assert await still(stack, SMALL) == before  # cancelled work never turns
    totals = await ledger.device_totals(SMALL)
    assert (totals.held, totals.cancelled) == (0, 11)
    assert balanced(totals)


async def test_stop_all_halts_a_turning_motor_and_drops_its_queue(stack: LocalStack, cloud: Redis) -> None:
    ledger = Ledger(cloud, streams=[EVENTS_STREAM], ttl_s=3600)
    before = await still(stack, MAIN)
    turning, queued = await send_gifts(stack, MAIN, [1500, 7])
    await wait_until(lambda: stack.rounds_turned(motor(stack, MAIN)) > before + 50, 30, "the motor turning")
    stopped = await control(cloud, ControlAction.STOP, ALL_MOTORS, "smoke")
    assert stopped.ok, stopped
    assert {m.device for m in stopped.motors} >= {MAIN, SMALL}
    main = next(m for m in stopped.motors if m.device == MAIN)
    assert main.edge is not None
    assert main.edge["stopped"] is True
    halted = await still(stack, MAIN)
    assert halted < before + 1500
    for command in await commands_of(ledger, [turning, queued]):
        assert command.state is CommandState.CANCELLED
    later = await send_gifts(stack, MAIN, [3])  # still held after a stop
    await wait_states(ledger, later, CommandState.HELD, "a gift after the stop recorded held")

    assert (await control(cloud, ControlAction.RESUME, ALL_MOTORS)).ok
    await wait_states(ledger, later, CommandState.DONE, "the gift after the stop turned on resume")
    assert await still(stack, MAIN) == halted + 3
    assert await cloud.hlen(HOLDS_KEY) == 0
    assert balanced(await ledger.device_totals(MAIN))
