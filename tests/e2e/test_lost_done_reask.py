"""Done reports ThingsBoard gave up on are repaired by the worker's re-asks, however many there are.

Real processes throughout (devstack.stack.LocalStack). The API is killed while both motors work
through their queues, and stays down until ThingsBoard's feedback queue has given up on every
command's done (each done's webhook refused on every try: the shipped strategy, with one retry after
1 s so the test is short). The edge's heartbeats repeat only its last finished command, and none
comes during the test, so they cannot repair them: each done must come back through the worker
asking after its delivered command (RotateParams.reask) and the edge sending that done again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cloud.ledger import CommandState, Ledger
from devstack.stack import LocalStack, StackOptions
from devstack.tb_emulator.harness import SHIPPED_QUEUES
from devstack.tb_emulator.queues import QueueConfig, load_queue_file
from giftwheel.contracts import EVENTS_STREAM
from tests.ingest.conftest import gift
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

FEEDBACK_QUEUE = "GiftwheelFeedback"  # the motor profile's defaultQueueName
RETRIES = 1
# Per motor: a long first command (seconds at time_scale 1: the API is killed meanwhile), then short
# ones queued behind it. Lion goes to motor_01, Rose to motor_02 (devstack/demo_rules.yaml).
GIFTS = [("Lion", 30), ("Rose", 30), ("Lion", 2), ("Rose", 3), ("Lion", 4), ("Rose", 2)]


def feedback_queue_giving_up_soon() -> list[QueueConfig]:
    """The shipped queues, the motors' one giving a refused webhook one more try, 1 s later."""
    queues = [load_queue_file(path) for path in SHIPPED_QUEUES]
    feedback = next(q for q in queues if q.name == FEEDBACK_QUEUE)
    assert feedback.processing_strategy is not None
    strategy = feedback.processing_strategy.model_copy(
        update={"retries": RETRIES, "pause_between_retries_s": 1, "max_pause_between_retries_s": 1}
    )
    return [q.model_copy(update={"processing_strategy": strategy}) if q is feedback else q for q in queues]


def refused_dones(stack: LocalStack) -> dict[str, int]:
    """Per commandId, the webhook calls of its done that failed."""
    refused: dict[str, int] = {}
    for call in stack.tb.webhook_calls():
        if call.get("statusCode") == 200:
            continue
        body: Any = json.loads(call["body"])
        if body.get("commandDone") is True:
            refused[body["commandId"]] = refused.get(body["commandId"], 0) + 1
    return refused


async def test_every_done_thingsboard_gave_up_on_comes_back_through_a_reask(tmp_path: Path) -> None:
    options = StackOptions(
        workers=1,
        time_scale=1,
        queues=tuple(feedback_queue_giving_up_soon()),
        edge={"heartbeat_interval_s": 300, "recent_done_in_heartbeat": 1},
        worker_env={**StackOptions().worker_env, "GIFTWHEEL_WORKER__COMMAND_DONE_CHECK_S": "1"},
    )
    stack = LocalStack(tmp_path, options)
    with stack:
        cloud = Redis.from_url(stack.cloud_redis.url)
        ledger = Ledger(cloud, streams=[EVENTS_STREAM], ttl_s=3600)
        try:
            event_ids = [f"tiktok:reask-{i}" for i in range(len(GIFTS))]
            headers = {"Authorization": f"Bearer {stack.options.api_key}"}
            async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as client:
                for event_id, (name, diamond) in zip(event_ids, GIFTS, strict=True):
                    event = gift(eventId=event_id, giftName=name, diamond=diamond, quantity=1)
                    assert (await client.post("/v1/events", json=event, headers=headers)).status_code == 202

            async def states() -> dict[str, CommandState]:
                decided = await ledger.decisions(EVENTS_STREAM, event_ids)
                found = await ledger.get_many(EVENTS_STREAM, sorted(set(decided.values())))
                assigned = len(decided) == len(event_ids)
                return {c.command_id: c.state for c in found if c is not None and assigned}

            async def all_delivered() -> bool:
                found = await states()
                return bool(found) and set(found.values()) == {CommandState.DELIVERED}

            await wait_until(all_delivered, 30, "the edge accepted every command")
            stack.api.kill()  # every webhook from here on is refused
            commands = set(await states())

            async def every_done_given_up_on() -> bool:
                refused = refused_dones(stack)
                return all(refused.get(c, 0) > RETRIES for c in commands)

            await wait_until(every_done_given_up_on, 90, "ThingsBoard gave up on every command's done")
            # Nothing closed them while the API was away, and ThingsBoard will not post them again.
            assert set((await states()).values()) == {CommandState.DELIVERED}
            stack.api.start()

            async def all_done() -> bool:
                return set((await states()).values()) == {CommandState.DONE}

            await wait_until(all_done, 30, "every command done, its done sent again after a re-ask")
            async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as client:
                metrics = (await client.get("/metrics")).text
            # Not a heartbeat's repair: the re-asks' dones came as plain done reports.
            recovered = re.search(r"^giftwheel_feedback_recovered_dones_total (\S+)$", metrics, re.M)
            assert recovered is None or float(recovered.group(1)) == 0, metrics
            for motor in stack.options.motors:
                totals = await ledger.device_totals(motor.name)
                assert (totals.failed, totals.outstanding) == (0, 0), motor.name
                # Each command turned once: the edge's own step record matches what was done.
                assert stack.rounds_turned(motor) == totals.done == totals.accepted, motor.name
        finally:
            await cloud.aclose()
