"""A telemetry ts far ahead of the server's clock (an attacker, or a Pi whose clock jumped) is
counted and replaced by the server's time: it never freezes a motor's state for viewers."""

from __future__ import annotations

import re
import time

import orjson
from redis.asyncio import Redis

from cloud.realtime.live_state import DEVICES_KEY
from tests.feedback.conftest import Api, Viewer, progress
from tests.ingest.conftest import read_metrics

FAR_FUTURE_MS = 9_999_999_999_999_999


async def clock_ahead(api: Api) -> float:
    text = await read_metrics(api.client)
    found = re.search(r"^giftwheel_feedback_clock_ahead_total (\S+)$", text, re.M)
    assert found is not None
    return float(found.group(1))


async def test_a_far_future_ts_does_not_freeze_the_motor(api: Api, viewer: Viewer, redis: Redis) -> None:
    ahead = await api.post_feedback(progress(1), ts_ms=FAR_FUTURE_MS)
    assert (ahead.status_code, ahead.json()["published"]) == (200, "motor.progress")
    assert await clock_ahead(api) == 1
    now = int(time.time() * 1000)
    later = await api.post_feedback(progress(2), ts_ms=now + 1_000)
    assert later.json()["published"] == "motor.progress"
    updates = await viewer.wait_for("motor.progress", 2)
    assert [u["commandRoundsDone"] for u in updates] == [1, 2]
    assert all(u["ts"] < now + 60_000 for u in updates)
    stored = orjson.loads(await redis.hget(DEVICES_KEY, "motor_01") or b"{}")
    assert (stored["commandRoundsDone"], stored["ts"]) == (2, now + 1_000)
    assert await clock_ahead(api) == 1  # the honest update is not counted


async def test_a_state_frozen_by_an_earlier_version_thaws(api: Api, viewer: Viewer, redis: Redis) -> None:
    frozen = {"commandRoundsDone": 1, "state": "running", "ts": FAR_FUTURE_MS}
    await redis.hset(DEVICES_KEY, "motor_01", orjson.dumps(frozen))
    response = await api.post_feedback(progress(2))
    assert response.json()["published"] == "motor.progress"
    (update,) = await viewer.wait_for("motor.progress")
    assert update["commandRoundsDone"] == 2
