"""A done report ThingsBoard gave up on is repaired by the edge's next heartbeat (recentDone).

Real processes throughout (devstack.stack.LocalStack), with the motors' rule-engine queue on
SKIP_ALL_FAILURES: the API is killed while a command turns, so every webhook of its progress and its
done is refused and dropped for good. Once the API is back, the command must still end up done in the
cloud ledger.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from cloud.ledger import CommandState, Ledger
from devstack.stack import LocalStack, StackOptions
from devstack.tb_emulator.harness import SHIPPED_QUEUES
from devstack.tb_emulator.queues import (
    ProcessingStrategy,
    ProcessingStrategyType,
    QueueConfig,
    load_queue_file,
)
from edge.buffer.keys import Keys
from giftwheel.contracts import EVENTS_STREAM
from tests.ingest.conftest import gift
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

EVENT_ID = "tiktok:lost-done-1"
FEEDBACK_QUEUE = "GiftwheelFeedback"  # the motor profile's defaultQueueName
ROUNDS = 40  # motor_01 at time_scale 1: a few seconds of turning, time to kill the API meanwhile
# The edge's shortest heartbeat: the repair comes at the next one after the API is back.
HEARTBEAT_S = 1


def feedback_queue_skipping_failures() -> list[QueueConfig]:
    """The shipped queues, the motors' one on SKIP_ALL_FAILURES: a refused webhook is not posted again."""
    queues = [load_queue_file(path) for path in SHIPPED_QUEUES]
    skip = ProcessingStrategy(type=ProcessingStrategyType.SKIP_ALL_FAILURES)
    return [
        q.model_copy(update={"processing_strategy": skip}) if q.name == FEEDBACK_QUEUE else q for q in queues
    ]


async def test_a_done_report_thingsboard_dropped_is_repaired_by_the_next_heartbeat(tmp_path: Path) -> None:
    options = StackOptions(
        workers=1,
        time_scale=1,
        queues=tuple(feedback_queue_skipping_failures()),
        edge={"heartbeat_interval_s": HEARTBEAT_S},
    )
    stack = LocalStack(tmp_path, options)
    with stack:
        cloud = Redis.from_url(stack.cloud_redis.url)
        edge = Redis.from_url(stack.edge_redis.url, decode_responses=True)
        ledger = Ledger(cloud, streams=[EVENTS_STREAM], ttl_s=3600)
        try:
            async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as client:
                event = gift(eventId=EVENT_ID, giftName="Lion", diamond=ROUNDS, quantity=1)
                headers = {"Authorization": f"Bearer {stack.options.api_key}"}
                assert (await client.post("/v1/events", json=event, headers=headers)).status_code == 202

            async def command() -> str | None:
                return (await ledger.decisions(EVENTS_STREAM, [EVENT_ID])).get(EVENT_ID)

            async def state() -> CommandState | None:
                command_id = await command()
                found = None if command_id is None else await ledger.get(EVENTS_STREAM, command_id)
                return None if found is None else found.state

            async def delivered() -> bool:
                return await state() is CommandState.DELIVERED

            await wait_until(delivered, 30, "the edge accepted the command")
            stack.api.kill()  # every webhook from here on is refused, and dropped

            async def finished_on_the_edge() -> bool:
                return int(await edge.hget(Keys().motor("motor_01"), "cd") or 0) >= 1

            await wait_until(finished_on_the_edge, 60, "the motor finished the command")
            await asyncio.sleep(1)  # the done's telemetry went through ThingsBoard, and was dropped
            assert await state() is CommandState.DELIVERED
            stack.api.start()

            async def done() -> bool:
                return await state() is CommandState.DONE

            await wait_until(done, 20, f"a heartbeat closed the command (one every {HEARTBEAT_S} s)")
            async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as client:
                metrics = (await client.get("/metrics")).text
            # The heartbeat closed it, not a late webhook: the recovery is what operators see.
            assert re.search(r"^giftwheel_feedback_recovered_dones_total 1\.0$", metrics, re.M), metrics
            totals = await ledger.device_totals("motor_01")
            assert (totals.done, totals.failed, totals.outstanding) == (ROUNDS, 0, 0)
        finally:
            await cloud.aclose()
            await edge.aclose()
