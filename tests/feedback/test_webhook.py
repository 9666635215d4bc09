"""The ThingsBoard feedback webhook: shared secret, validation, ledger, published events."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from redis.asyncio import Redis

from cloud.api.app import create_app
from cloud.ledger.store import CommandState, Ledger
from cloud.realtime.live_state import DEVICES_KEY
from devstack.asgi_server import serve
from devstack.redis_server import RedisServer
from giftwheel.contracts.motor import RECENT_DONE_LIMIT, command_id_for
from tests.feedback.conftest import COMMAND_ID, STREAM, Api, Viewer, make_settings, new_command, progress
from tests.ingest.conftest import read_metrics


async def nothing_published(viewer: Viewer, redis: Redis, quiet_s: float = 0.3) -> None:
    await asyncio.sleep(quiet_s)
    assert [e["event"] for e in viewer.events] == ["state"]
    assert await redis.hlen(DEVICES_KEY) == 0


@pytest.mark.parametrize(
    ("secret", "reason"),
    [(None, "missing x-giftwheel-secret header"), ("not-the-secret-0123456789", "wrong shared secret")],
)
async def test_missing_or_wrong_secret_is_refused_and_nothing_is_broadcast(
    api: Api, viewer: Viewer, redis: Redis, secret: str | None, reason: str
) -> None:
    response = await api.post_feedback(progress(1), secret=secret)
    assert response.status_code == 401
    assert response.json() == {"error": "unauthorized", "detail": reason}
    await nothing_published(viewer, redis)


async def test_production_without_a_configured_secret_refuses_everything(redis_server: RedisServer) -> None:
    settings = make_settings(redis_server.url, feedback={})
    assert settings.feedback_auth_problem() is not None
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        response = await Api(url, client).post_feedback(progress(1))
    assert response.status_code == 401
    assert response.json()["detail"] == "no feedback secret configured on this server"


@pytest.mark.parametrize(
    ("raw", "headers", "field", "reason"),
    [
        (b"{not json", {}, "", "malformed JSON"),
        (b"[1, 2]", {}, "", "JSON object"),
        (b'{"temperature": 21}', {}, "", "no motor telemetry key"),
        (b'{"roundsCompleted": "many"}', {}, "roundsCompleted", "valid integer"),
        (b'{"roundsCompleted": -1}', {}, "roundsCompleted", "greater than or equal to 0"),
        (b'{"commandId": "nope"}', {}, "commandId", "pattern"),
        (b'{"state": "dancing"}', {}, "state", "idle"),
        (b'{"roundsCompleted": 1, "roundsCompleted": 9}', {}, "roundsCompleted", "given twice"),
        (b'{"state": "idle"}', {"device": None}, "x-device-name", "motor device"),
        (b'{"state": "idle"}', {"device": "motor 01/../x"}, "x-device-name", "motor device"),
        (b'{"state": "idle"}', {"ts_ms": -5}, "x-telemetry-ts", "Unix milliseconds"),
        (b'{"state": "idle"}', {"ts_ms": b"9" * 5_000}, "x-telemetry-ts", "Unix milliseconds"),
        # Latin-1 0xB2 is "²" to the server: str.isdigit() says yes, int() says no.
        (b'{"state": "idle"}', {"ts_ms": b"17\xb2"}, "x-telemetry-ts", "Unix milliseconds"),
    ],
)
async def test_malformed_bodies_get_422_with_the_reason(
    api: Api, viewer: Viewer, redis: Redis, raw: bytes, headers: dict[str, object], field: str, reason: str
) -> None:
    response = await api.post_feedback(None, raw=raw, **headers)  # type: ignore[arg-type]
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "invalid"
    assert body["detail"][0]["field"] == field
    assert reason in body["detail"][0]["reason"]
    await nothing_published(viewer, redis)


async def test_oversized_body_gets_413(api: Api) -> None:
    response = await api.post_feedback(None, raw=b'{"state": "idle", "pad": "' + b"x" * 20_000 + b'"}')
    assert response.status_code == 413


async def test_unknown_extra_keys_are_ignored(api: Api, viewer: Viewer) -> None:
    response = await api.post_feedback({**progress(1), "temperature": 40})
    assert response.status_code == 200
    (update,) = await viewer.wait_for("motor.progress")
    assert "temperature" not in update


async def test_progress_reaches_viewers_compact_and_with_an_eta(api: Api, viewer: Viewer) -> None:
    now = int(time.time() * 1000)
    for done in (1, 2, 3):
        response = await api.post_feedback(progress(done, 10), ts_ms=now + done * 500)
        assert response.json() == {"device": "motor_01", "published": "motor.progress", "ledger": None}
    updates = await viewer.wait_for("motor.progress", 3)
    assert [u["commandRoundsDone"] for u in updates] == [1, 2, 3]
    last = updates[-1]
    assert last["device"] == "motor_01"
    assert last["commandId"] == COMMAND_ID
    assert (last["commandRounds"], last["queuedRounds"], last["state"]) == (10, 7, "running")
    assert last["etaS"] == pytest.approx(7 * 0.5)  # half a second per round, 7 rounds queued


async def test_telemetry_arriving_late_never_moves_progress_backwards(api: Api, viewer: Viewer) -> None:
    now = int(time.time() * 1000)
    assert (await api.post_feedback(progress(3), ts_ms=now)).json()["published"] == "motor.progress"
    late = await api.post_feedback(progress(2), ts_ms=now - 100)  # REST calls run in parallel
    assert late.status_code == 200
    assert late.json()["published"] is None
    await asyncio.sleep(0.2)
    assert [u["commandRoundsDone"] for u in viewer.named("motor.progress")] == [3]


async def test_a_command_queued_behind_the_running_one_changes_only_the_queue(
    api: Api, viewer: Viewer
) -> None:
    now = int(time.time() * 1000)
    await api.post_feedback(progress(2, 5), ts_ms=now)
    other = "c-" + "cd" * 16
    # What the edge reports when it accepts a second command (edge/buffer/scripts.py SUBMIT).
    queued = {
        "commandId": other,
        "commandRounds": 4,
        "commandRoundsDone": 0,
        "commandDone": False,
        "queuedRounds": 7,
    }
    await api.post_feedback(queued, ts_ms=now + 10)
    updates = await viewer.wait_for("motor.progress", 2)
    assert updates[-1]["commandId"] == COMMAND_ID
    assert (updates[-1]["commandRoundsDone"], updates[-1]["queuedRounds"]) == (2, 7)


async def test_done_marks_the_ledger_command_done_and_reaches_viewers(
    api: Api, viewer: Viewer, ledger: Ledger
) -> None:
    stream = STREAM
    command = await new_command(ledger, "tiktok:e1", 3)
    assert command.command_id == command_id_for(["tiktok:e1"])
    totals_before = await ledger.device_totals("motor_01")

    for done in (1, 2):
        response = await api.post_feedback(progress(done, 3, command_id=command.command_id))
        assert response.json()["ledger"] is None
    assert (await ledger.get(stream, command.command_id)).state == CommandState.QUEUED  # type: ignore[union-attr]
    response = await api.post_feedback(progress(3, 3, command_id=command.command_id))
    assert response.json() == {"device": "motor_01", "published": "motor.done", "ledger": "done"}

    assert (await ledger.get(stream, command.command_id)).state == CommandState.DONE  # type: ignore[union-attr]
    totals = await ledger.device_totals("motor_01")
    assert (totals.done - totals_before.done, totals.outstanding) == (3, 0)
    (done_event,) = await viewer.wait_for("motor.done")
    assert done_event["commandId"] == command.command_id
    assert (done_event["commandRoundsDone"], done_event["commandDone"]) == (3, True)

    # The chain may repeat a call: the ledger does not count the rounds twice.
    await api.post_feedback(progress(3, 3, command_id=command.command_id))
    assert (await ledger.device_totals("motor_01")).done == totals.done


async def test_a_heartbeat_closes_commands_whose_done_report_was_lost(
    api: Api, viewer: Viewer, ledger: Ledger
) -> None:
    stream = STREAM
    commands = {}
    for name, device in (("lost", "motor_01"), ("timed-out", "motor_01"), ("done", "motor_01"),
                         ("other", "motor_02")):  # fmt: skip
        commands[name] = await new_command(ledger, f"tiktok:{name}", 2, device)
        await ledger.mark_delivered(stream, commands[name].command_id, deadline_ms=None)
    await ledger.mark_failed(stream, commands["timed-out"].command_id, "no completion feedback")
    assert (
        await api.post_feedback(progress(2, 2, command_id=commands["done"].command_id))
    ).status_code == 200
    await viewer.wait_for("motor.done")
    before = await ledger.device_totals("motor_01")

    # The heartbeat names what motor_01 finished, plus another device's command and an unknown id.
    heartbeat = {
        "state": "idle",
        "queuedRounds": 0,
        "recentDone": [c.command_id for c in commands.values()] + ["c-" + "0" * 32],
    }
    response = await api.post_feedback(heartbeat)
    assert response.status_code == 200, response.text
    dones = await viewer.wait_for("motor.done", 3)
    recovered = {d["commandId"]: d for d in dones[1:]}
    assert set(recovered) == {commands["lost"].command_id, commands["timed-out"].command_id}
    assert all(
        d["recovered"] and d["commandRoundsDone"] == d["commandRounds"] == 2 for d in recovered.values()
    )
    for name, state in (("lost", "done"), ("timed-out", "done"), ("done", "done"), ("other", "delivered")):
        assert (await ledger.get(stream, commands[name].command_id)).state == state  # type: ignore[union-attr]
    totals = await ledger.device_totals("motor_01")
    assert (totals.done - before.done, totals.failed, totals.outstanding) == (4, 0, 0)

    # Every later heartbeat repeats the ids: nothing moves, nothing is published again.
    assert (await api.post_feedback(heartbeat)).status_code == 200
    await asyncio.sleep(0.3)
    assert len(viewer.named("motor.done")) == 3
    metrics = await read_metrics(api.client)
    assert "giftwheel_feedback_recovered_dones_total 2.0" in metrics  # the loss is visible to operators
    assert await ledger.device_totals("motor_01") == totals


async def test_recent_done_is_validated(api: Api) -> None:
    too_many = {"recentDone": [f"c-{i:08x}" for i in range(RECENT_DONE_LIMIT + 1)]}
    response = await api.post_feedback(too_many)
    assert (response.status_code, response.json()["detail"][0]["field"]) == (422, "recentDone")
    response = await api.post_feedback({"recentDone": ["not-a-command"]})
    assert (response.status_code, response.json()["detail"][0]["field"]) == (422, "recentDone.0")


async def test_rounds_all_done_closes_the_command_even_without_the_done_flag(
    api: Api, viewer: Viewer
) -> None:
    body = {**progress(4, 4), "commandDone": False}
    response = await api.post_feedback(body)
    assert response.json()["published"] == "motor.done"
    await viewer.wait_for("motor.done")


async def test_redis_down_gets_503_so_the_chain_can_retry(api: Api, redis_server: RedisServer) -> None:
    redis_server.stop()
    response = await api.post_feedback(progress(1))
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert str(redis_server.port) not in response.text  # where Redis is stays private
