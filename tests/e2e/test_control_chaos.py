"""A stop during a rotation, then faults: nothing turns twice, nothing is lost.

Real processes (devstack.stack.LocalStack): a motor turning a long command is stopped; while it is
held the edge daemon is killed -9 and restarted, the cloud Redis restarted (AOF), and ThingsBoard
(the emulator) is away for 20 s, during which an operator resumes the motor, so the edge never
hears the resume: the worker's reconciliation sends it once ThingsBoard is back. Gifts arrive all
along. Afterwards every accepted gift's rounds were turned exactly once or recorded cancelled (by
the stop), the edge's step record and own ledger agree with the cloud ledger's done rounds, and
the ledger balances with nothing held or outstanding.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from cloud.ledger import CommandState, Ledger
from devstack.stack import LocalStack, StackOptions
from edge.buffer.keys import Keys
from giftwheel.contracts import EVENTS_STREAM
from giftwheel.contracts.control import HOLDS_KEY, ControlAction
from tests.control.test_control_e2e import (
    MAIN,
    SMALL,
    balanced,
    commands_of,
    control,
    motor,
    send_gifts,
    still,
    wait_states,
)
from tests.local_stack import cloud, stack
from tests.waiting import wait_until

__all__ = ["cloud", "stack"]  # the module's local stack and its cloud Redis
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TB_OUTAGE_S = 20  # the figure
# Reconcile quickly, and judge a motor only on what it reported in the last few seconds (the
# stack's edge reports every 5 s), so the resume goes out once the edge is back behind ThingsBoard.
RECONCILE_ENV = {
    "GIFTWHEEL_WORKER__RECONCILE__INTERVAL_S": "0.2",
    "GIFTWHEEL_WORKER__RECONCILE__SETTLE_S": "1",
    "GIFTWHEEL_WORKER__RECONCILE__MIN_INTERVAL_S": "5",
    "GIFTWHEEL_WORKER__RECONCILE__FRESH_WITHIN_S": "6",
    "GIFTWHEEL_WORKER__RECONCILE__LEASE_S": "2",
}


@pytest.fixture(scope="module")
def stack_options() -> StackOptions:
    options = StackOptions(workers=1)
    return replace(options, worker_env={**options.worker_env, **RECONCILE_ENV})


async def edge_rounds(stack: LocalStack, name: str) -> int:
    """Rounds the motor's controller recorded completed, from the edge's own local Redis."""
    redis = Redis.from_url(stack.edge_redis.url, decode_responses=True)
    try:
        return int(await redis.hget(Keys().motor(name), "rc") or 0)
    finally:
        await redis.aclose()


async def answers(redis: Redis) -> bool:
    try:
        return bool(await redis.ping())
    except (RedisError, OSError):
        return False


async def test_stop_then_edge_redis_and_thingsboard_faults(stack: LocalStack, cloud: Redis) -> None:
    ledger = Ledger(cloud, streams=[EVENTS_STREAM], ttl_s=3600)
    main_before, small_before = await still(stack, MAIN), await still(stack, SMALL)

    # A long command turning, another queued behind it: the stop cuts the first, drops the second.
    stopped_ids = await send_gifts(stack, MAIN, [500, 7])
    await wait_until(lambda: stack.rounds_turned(motor(stack, MAIN)) > main_before + 50, 30, "MAIN turning")
    stopped = await control(cloud, ControlAction.STOP, MAIN, "chaos drill")
    assert stopped.ok, stopped
    halted = await still(stack, MAIN)
    assert main_before < halted < main_before + 500
    halted_rc = await edge_rounds(stack, MAIN)
    for command in await wait_states(ledger, stopped_ids, CommandState.CANCELLED, "the stop's cancels"):
        assert (command.cancelled_by, command.cancel_reason) == ("ops-test", "chaos drill")

    # Held: gifts keep being accepted and recorded held, through an edge crash and a Redis restart.
    held_ids = await send_gifts(stack, MAIN, [4])
    await wait_states(ledger, held_ids, CommandState.HELD, "a gift recorded held")
    await asyncio.to_thread(stack.edge.kill)
    held_ids += await send_gifts(stack, MAIN, [5])
    await asyncio.to_thread(stack.edge.start, timeout_s=60)
    await asyncio.to_thread(stack.cloud_redis.restart)
    await wait_until(lambda: answers(cloud), 30, "the cloud Redis back")
    assert await cloud.hexists(HOLDS_KEY, MAIN)  # the hold survived the restart (AOF)
    await wait_states(ledger, held_ids, CommandState.HELD, "the gifts recorded held")
    assert await still(stack, MAIN) == halted  # the restarted edge stayed held

    # ThingsBoard away: the resume reaches the cloud, not the edge; gifts keep coming.
    await asyncio.to_thread(stack.tb.stop)
    resumed = await control(cloud, ControlAction.RESUME, MAIN)
    assert not resumed.ok  # the edge was not reached ...
    assert not await cloud.hexists(HOLDS_KEY, MAIN)  # ... the cloud's hold is lifted all the same
    assert resumed.motors[0].requeued_commands == 2
    during_main = await send_gifts(stack, MAIN, [6])
    during_small = await send_gifts(stack, SMALL, [2])
    await asyncio.sleep(TB_OUTAGE_S)
    await asyncio.to_thread(stack.tb.start)

    # Back: the queued commands go out, the edge takes them held, and the reconciliation resumes it.
    turned_ids = held_ids + during_main
    done = await wait_states(ledger, turned_ids, CommandState.DONE, "the held and later gifts turned")
    await wait_states(ledger, during_small, CommandState.DONE, "SMALL's gift turned")
    assert sum(c.rounds for c in done) == 4 + 5 + 6
    # Each once, the cut command never again (to within float rounding, far below one pulse).
    assert await still(stack, MAIN) == pytest.approx(halted + 15, abs=1e-6)
    assert await still(stack, SMALL) == pytest.approx(small_before + 2, abs=1e-6)
    assert await edge_rounds(stack, MAIN) == halted_rc + 15
    for command in await commands_of(ledger, stopped_ids):
        assert command.state is CommandState.CANCELLED  # never turned again, never lost
    for device in (MAIN, SMALL):
        totals = await ledger.device_totals(device)
        assert balanced(totals), totals
        assert (totals.held, totals.outstanding) == (0, 0), totals
