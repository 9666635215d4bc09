"""The webhook shows viewers only what the ledger knows: strict types, known motors, issued commands.

Whatever else arrives (a misconfigured chain, a device ThingsBoard knows but giftwheel never sent a
command, a forged done) is refused with 422, counted on /metrics, and leaves no trace for viewers.
"""

from __future__ import annotations

import asyncio
import re

import orjson
import pytest
from redis.asyncio import Redis

from cloud.ledger.store import CommandState, Ledger
from cloud.realtime.live_state import DEVICES_KEY
from tests.feedback.conftest import STREAM, Api, Viewer, new_command, progress
from tests.ingest.conftest import read_metrics


async def refused(api: Api, reason: str) -> float:
    text = await read_metrics(api.client)
    found = re.search(rf'^giftwheel_feedback_refused_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return 0.0 if found is None else float(found.group(1))


async def nothing_shown(api: Api, viewer: Viewer) -> None:
    await asyncio.sleep(0.3)
    assert [e["event"] for e in viewer.events] == ["state"]
    late = await Viewer.open(api.viewer_url())
    (state,) = await late.wait_for("state")
    assert state["done"] == []
    await late.close()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("commandDone", "yes"),
        ("commandDone", 1),
        ("commandRoundsDone", "3"),
        ("commandRounds", 3.0),
        ("roundsCompleted", True),
    ],
)
async def test_values_of_the_wrong_type_are_refused_not_coerced(
    api: Api, viewer: Viewer, ledger: Ledger, key: str, value: object
) -> None:
    command = await new_command(ledger, "tiktok:typed", 3)
    body = {**progress(1, 3, command_id=command.command_id), key: value}
    response = await api.post_feedback(body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["field"] == key
    assert (await ledger.get(STREAM, command.command_id)).state == CommandState.QUEUED  # type: ignore[union-attr]
    await nothing_shown(api, viewer)


async def test_a_done_for_a_command_the_ledger_never_issued_is_refused(api: Api, viewer: Viewer) -> None:
    response = await api.post_feedback(progress(3, 3, command_id="c-" + "d" * 32))
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "commandId"
    assert await refused(api, "unknown_command") == 1
    await nothing_shown(api, viewer)


async def test_a_done_for_another_motors_command_is_refused(api: Api, viewer: Viewer, ledger: Ledger) -> None:
    command = await new_command(ledger, "tiktok:for-02", 2, "motor_02")
    response = await api.post_feedback(progress(2, 2, command_id=command.command_id), device="motor_01")
    assert response.status_code == 422
    assert await refused(api, "unknown_command") == 1
    assert (await ledger.get(STREAM, command.command_id)).state == CommandState.QUEUED  # type: ignore[union-attr]
    await nothing_shown(api, viewer)


async def test_a_device_never_sent_a_command_is_refused_and_not_kept(
    api: Api, viewer: Viewer, redis: Redis
) -> None:
    response = await api.post_feedback(progress(1), device="motor_99")
    assert response.status_code == 422
    assert response.json()["detail"][0]["field"] == "x-device-name"
    assert await refused(api, "unknown_device") == 1
    assert not await redis.hexists(DEVICES_KEY, "motor_99")
    await nothing_shown(api, viewer)
    # Known motors are unaffected.
    known = await api.post_feedback(progress(1), device="motor_01")
    assert known.json()["published"] == "motor.progress"
    assert orjson.loads(await redis.hget(DEVICES_KEY, "motor_01") or b"{}")["commandRoundsDone"] == 1


async def test_a_device_the_rules_name_is_shown_before_its_first_command(
    api: Api, viewer: Viewer, ledger: Ledger, redis: Redis
) -> None:
    response = await api.post_feedback(progress(0), device="motor_42")
    assert response.status_code == 422  # not named yet: as a device giftwheel does not drive
    await ledger.add_devices(["motor_42"])  # what a worker whose rules name it does at its start
    response = await api.post_feedback(progress(0), device="motor_42")
    assert response.status_code == 200, response.text
    assert response.json()["published"] == "motor.progress"
    assert await redis.hexists(DEVICES_KEY, "motor_42")
