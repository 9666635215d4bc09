"""The webhook under ThingsBoard's redeliveries: the same telemetry POSTed again, at once or late.

A rule-engine queue on RETRY_FAILED_AND_TIMED_OUT re-sends a whole pack, and re-sends messages still
pending after its packProcessingTimeout while the first POST may still be running
(TbRuleEngineProcessingStrategyFactory, TbRuleEngineQueueConsumerManager; docs/thingsboard.md s.2):
the API gets duplicates, concurrently and out of order. Nothing may count twice or run backwards.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from cloud.ledger.store import CommandState, DeviceTotals, Ledger
from tests.feedback.conftest import STREAM, Api, Viewer, new_command, progress
from tests.ingest.conftest import read_metrics

COPIES = 6


async def post_concurrently(
    api: Api, body: dict[str, Any], ts_ms: int, copies: int = COPIES
) -> list[str | None]:
    responses = await asyncio.gather(*(api.post_feedback(body, ts_ms=ts_ms) for _ in range(copies)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    return [r.json()["published"] for r in responses]


async def recovered_dones(api: Api) -> float:
    text = await read_metrics(api.client)
    found = re.search(r"^giftwheel_feedback_recovered_dones_total (\S+)$", text, re.M)
    assert found is not None
    return float(found.group(1))


async def settle() -> None:
    """Long enough for anything published to reach the viewer (it would show up as extra events)."""
    await asyncio.sleep(0.3)


def assert_never_backwards(viewer: Viewer) -> None:
    by_command: dict[str, list[int]] = {}
    for update in viewer.named("motor.progress"):
        by_command.setdefault(update["commandId"], []).append(update["commandRoundsDone"])
    for command_id, done in by_command.items():
        assert done == sorted(done), f"progress of {command_id} went backwards: {done}"


async def test_the_same_progress_posted_concurrently_is_published_once(api: Api, viewer: Viewer) -> None:
    now = int(time.time() * 1000)
    published = await post_concurrently(api, progress(2, 10), now)
    assert published.count("motor.progress") == 1
    assert published.count(None) == COPIES - 1
    await settle()
    assert [u["commandRoundsDone"] for u in viewer.named("motor.progress")] == [2]


async def test_duplicates_after_later_telemetry_never_move_progress_backwards(
    api: Api, viewer: Viewer
) -> None:
    now = int(time.time() * 1000)
    bodies = {done: progress(done, 10) for done in (1, 2, 3)}
    for done, body in bodies.items():
        assert (await api.post_feedback(body, ts_ms=now + done)).json()["published"] == "motor.progress"
    # every earlier message again, all at once, and the latest once more
    late = await asyncio.gather(
        *(api.post_feedback(bodies[done], ts_ms=now + done) for done in (1, 2, 3, 1, 2, 3))
    )
    assert [r.json()["published"] for r in late] == [None] * 6
    await settle()
    assert [u["commandRoundsDone"] for u in viewer.named("motor.progress")] == [1, 2, 3]
    assert_never_backwards(viewer)


async def test_a_done_report_delivered_twice_at_once_closes_the_ledger_once_and_is_announced_once(
    api: Api, viewer: Viewer, ledger: Ledger
) -> None:
    known = await ledger.device_totals("motor_01")  # known_motors' command
    command = await new_command(ledger, "tiktok:dup-done", 4)
    now = int(time.time() * 1000)
    for done in (1, 2, 3):
        await api.post_feedback(progress(done, 4, command_id=command.command_id), ts_ms=now + done)
    done_report = progress(4, 4, command_id=command.command_id)
    published = await post_concurrently(api, done_report, now + 4)
    assert published.count("motor.done") == 1
    # ... and once more after later telemetry (the next command started), in and out of order
    other = await new_command(ledger, "tiktok:next", 2)
    await api.post_feedback(progress(1, 2, command_id=other.command_id), ts_ms=now + 5)
    again = await asyncio.gather(
        api.post_feedback(done_report, ts_ms=now + 4),
        api.post_feedback(progress(3, 4, command_id=command.command_id), ts_ms=now + 3),
    )
    assert [r.json()["published"] for r in again] == [None, None]
    await settle()

    dones = viewer.named("motor.done")
    assert [d["commandId"] for d in dones] == [command.command_id]
    assert (dones[0]["commandRoundsDone"], dones[0]["commandDone"]) == (4, True)
    stored = await ledger.get(STREAM, command.command_id)
    assert stored is not None
    assert stored.state is CommandState.DONE
    assert await ledger.device_totals("motor_01") == known + DeviceTotals(accepted=6, sent=4, done=4)
    assert_never_backwards(viewer)
    # a late joiner's snapshot holds the done once
    joiner = await Viewer.open(api.viewer_url())
    try:
        (state,) = await joiner.wait_for("state")
        assert [d["commandId"] for d in state["done"]] == [command.command_id]
    finally:
        await joiner.close()


async def test_a_heartbeat_delivered_concurrently_recovers_a_lost_done_once(
    api: Api, viewer: Viewer, ledger: Ledger
) -> None:
    known = await ledger.device_totals("motor_01")  # known_motors' command
    command = await new_command(ledger, "tiktok:lost-done", 3)
    await ledger.mark_delivered(STREAM, command.command_id, deadline_ms=None)
    heartbeat = {"state": "idle", "queuedRounds": 0, "recentDone": [command.command_id]}
    now = int(time.time() * 1000)
    await post_concurrently(api, heartbeat, now)
    # the done report the heartbeat stood in for arrives after all, twice
    late_done = progress(3, 3, command_id=command.command_id)
    assert await post_concurrently(api, late_done, now - 1000, copies=2) == [None, None]
    await settle()
    assert [d["commandId"] for d in viewer.named("motor.done")] == [command.command_id]
    assert await recovered_dones(api) == 1
    assert await ledger.device_totals("motor_01") == known + DeviceTotals(accepted=3, sent=3, done=3)
