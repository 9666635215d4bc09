"""The control room's API against a real `giftwheel api` and Redis: who may log in, how long a session
lives, what a cross-site request gets, and that the audit stream holds every action."""

from __future__ import annotations

import time

import httpx
import orjson
from redis.asyncio import Redis

from cloud.worker.dlq import DeadLetters
from giftwheel.contracts import EVENT_FIELD, EVENTS_STREAM
from giftwheel.contracts.control import CONTROL_FIELD, CONTROL_STREAM
from tests.console.conftest import (
    LOGIN_FAILURES_MAX,
    OPERATOR,
    PASSWORD,
    SESSION_TTL_S,
    Operator,
    audit,
    entries,
    log_in,
    two_motors,
)

FOREIGN = "https://evil.example"


async def test_a_wrong_password_or_an_unknown_operator_is_refused_and_audited(
    anonymous: httpx.AsyncClient, cloud: Redis
) -> None:
    wrong = await log_in(anonymous, password="not it")
    unknown = await log_in(anonymous, user="nobody")
    assert (wrong.status_code, unknown.status_code) == (401, 401)
    assert wrong.json() == unknown.json() == {"error": "unauthorized", "detail": "wrong user or password"}
    assert "giftwheel_console" not in anonymous.cookies
    assert (await anonymous.get("/v1/console/status")).status_code == 401
    entries = await audit(cloud)
    assert [(e["who"], e["action"], e["result"]) for e in entries] == [
        (OPERATOR, "login", "failed"),
        ("nobody", "login", "failed"),
    ]
    assert all(e["client"] == "127.0.0.1" and int(e["atMs"]) > 0 for e in entries)


async def test_failed_logins_are_rate_limited_even_for_the_right_password(
    anonymous: httpx.AsyncClient,
) -> None:
    for _ in range(LOGIN_FAILURES_MAX):
        assert (await log_in(anonymous, password="guess")).status_code == 401
    blocked = await log_in(anonymous)
    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0
    assert blocked.json()["error"] == "too_many_logins"


async def test_bad_login_bodies_get_a_problem_naming_the_field(anonymous: httpx.AsyncClient) -> None:
    answer = await anonymous.post("/v1/console/login", json={"user": OPERATOR})
    assert answer.status_code == 422
    assert answer.json() == {
        "error": "invalid_request",
        "detail": [{"field": "password", "reason": "Field required"}],
    }
    assert (await anonymous.post("/v1/console/login", content=b"{")).status_code == 422


async def test_the_session_cookie_is_http_only_strict_and_expires(operator: Operator, cloud: Redis) -> None:
    await operator.client.get("/v1/console/session")
    cookie = next(c for c in operator.client.cookies.jar if c.name == "giftwheel_console")
    assert cookie.has_nonstandard_attr("HttpOnly")
    assert cookie.get_nonstandard_attr("SameSite") == "strict"
    assert not cookie.secure  # plain http here; over https (or a TLS proxy we trust) it is Secure
    assert 0 < await cloud.ttl(operator.session_key) <= SESSION_TTL_S
    assert (await operator.get("status")).status_code == 200
    await cloud.pexpire(operator.session_key, 1)  # Redis ends the session as its TTL would
    while await cloud.exists(operator.session_key):
        pass
    expired = await operator.get("status")
    assert expired.status_code == 401
    assert "expired" in expired.json()["detail"]
    assert (await operator.post("control", {"action": "hold", "device": "motor_01"})).status_code == 401


async def test_logout_ends_the_session(operator: Operator, cloud: Redis) -> None:
    assert (await operator.post("logout")).status_code == 204
    assert (await operator.get("status")).status_code == 401
    assert [e["action"] for e in await audit(cloud)] == ["login", "logout"]


async def test_cross_site_requests_are_refused_and_nothing_is_done(operator: Operator, cloud: Redis) -> None:
    hold = {"action": "hold", "device": "*", "reason": "x"}
    no_token = await operator.client.post("/v1/console/control", json=hold)
    wrong_token = (
        await operator.post("control", hold)
        if False
        else await operator.client.post(
            "/v1/console/control", json=hold, headers={"X-CSRF-Token": "not-the-token"}
        )
    )
    foreign_origin = await operator.post("control", hold, Origin=FOREIGN)
    foreign_referer = await operator.post("control", hold, Referer=f"{FOREIGN}/page")
    # What a form on another site can send: urlencoded, its own Origin, no header of ours.
    form = await operator.client.post(
        "/v1/console/control", data={"action": "stop", "device": "*"}, headers={"Origin": FOREIGN}
    )
    login_elsewhere = await operator.client.post(
        "/v1/console/login", json={"user": OPERATOR, "password": PASSWORD}, headers={"Origin": FOREIGN}
    )
    answers = [no_token, wrong_token, foreign_origin, foreign_referer, form, login_elsewhere]
    assert [a.status_code for a in answers] == [403] * 6
    assert [a.json()["error"] for a in answers] == [
        "csrf",
        "csrf",
        "cross_site",
        "cross_site",
        "cross_site",
        "cross_site",
    ]
    assert await cloud.xlen(CONTROL_STREAM) == 0
    refused = [e for e in await audit(cloud) if e["result"] == "refused"]
    assert len(refused) == 6
    assert all(e["who"] == OPERATOR for e in refused[:5])
    # Our own page's Origin passes.
    own = await operator.post("control", hold, Origin=str(operator.client.base_url).rstrip("/"))
    assert own.status_code == 202


async def test_a_control_request_is_queued_as_the_operator_and_audited(
    operator: Operator, cloud: Redis
) -> None:
    answer = await operator.post("control", {"action": "hold", "device": "motor_01", "reason": "refill"})
    # No worker in this module: the request stays queued, and the operator is told so.
    assert answer.status_code == 202
    assert answer.json()["error"] == "not_confirmed"
    [fields] = await entries(cloud, CONTROL_STREAM)
    request = orjson.loads(fields[CONTROL_FIELD])
    assert (request["action"], request["device"], request["by"], request["reason"]) == (
        "hold",
        "motor_01",
        OPERATOR,
        "refill",
    )
    last = (await audit(cloud))[-1]
    assert (last["who"], last["action"], last["result"]) == (OPERATOR, "control.hold", "unconfirmed")
    assert orjson.loads(last["detail"])["requestId"] == request["requestId"]


async def test_bad_control_requests_name_the_field(operator: Operator, cloud: Redis) -> None:
    bad_action = await operator.post("control", {"action": "explode", "device": "motor_01"})
    bad_device = await operator.post("control", {"action": "hold", "device": "no such name!"})
    assert (bad_action.status_code, bad_device.status_code) == (422, 422)
    assert bad_action.json()["detail"][0]["field"] == "action"
    assert {d["field"] for d in bad_device.json()["detail"]} == {"device"}
    assert await cloud.xlen(CONTROL_STREAM) == 0


async def test_a_test_gift_goes_into_the_queue_marked_as_a_test(operator: Operator, cloud: Redis) -> None:
    answer = await operator.post("test-gift", {"giftName": "Rose", "diamond": 2, "quantity": 3})
    assert answer.status_code == 202, answer.text
    event_id = answer.json()["eventId"]
    assert event_id.startswith("test:")
    [fields] = await entries(cloud, EVENTS_STREAM)
    event = orjson.loads(fields[EVENT_FIELD])
    assert event["eventId"] == event_id
    assert event["platform"] == "test"
    assert event["userName"] == f"TEST ({OPERATOR})"
    refused = await operator.post("test-gift", {"diamond": 0})
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["field"] == "diamond"
    last = (await audit(cloud))[-1]
    assert (last["action"], last["result"]) == ("test-gift", "ok")


async def test_dead_letters_are_listed_and_replayed_onto_their_stream(
    operator: Operator, cloud: Redis
) -> None:
    letters = DeadLetters(cloud)
    event = orjson.dumps({"eventId": "tiktok:dead-1"}).decode()
    dead_id = await letters.add(EVENTS_STREAM, "1-1", {EVENT_FIELD: event}, "handler crashed", 5)
    listed = (await operator.get("dlq")).json()
    assert listed["size"] == 1
    assert [(x["id"], x["reason"], x["deliveries"], x["event"]) for x in listed["letters"]] == [
        (dead_id, "handler crashed", 5, event)
    ]
    replayed = await operator.post("dlq/replay", {"ids": [dead_id, "9-9"]})
    assert replayed.status_code == 200
    assert [x["id"] for x in replayed.json()["replayed"]] == [dead_id]
    assert replayed.json()["missing"] == ["9-9"]
    assert await letters.size() == 0
    [fields] = await entries(cloud, EVENTS_STREAM)
    assert fields[EVENT_FIELD] == event
    assert (await operator.post("dlq/replay", {})).status_code == 422
    last = (await audit(cloud))[-1]
    assert (last["action"], last["result"], orjson.loads(last["detail"])["replayed"]) == (
        "dlq.replay",
        "ok",
        1,
    )


RULES = """\
version: 1
default_device: motor_01
rules:
  - name: roses
    match: {gift_name: Rose}
    device: motor_02
"""


async def test_rules_upload_is_validated_and_a_bad_one_keeps_the_rules(
    operator: Operator, cloud: Redis
) -> None:
    assert (await operator.get("rules")).json() == {"source": "file", "yaml": None}
    put = {"X-CSRF-Token": operator.csrf, "Content-Type": "text/yaml"}
    good = await operator.client.put("/v1/console/rules", content=RULES, headers=put)
    assert good.status_code == 200, good.text
    assert good.json() == {"version": 1, "rules": 1, "devices": ["motor_01", "motor_02"]}
    not_yaml = await operator.client.put("/v1/console/rules", content="version: [1", headers=put)
    bad_device = await operator.client.put(
        "/v1/console/rules", content=RULES.replace("motor_02", "bad name!"), headers=put
    )
    assert (not_yaml.status_code, bad_device.status_code) == (422, 422)
    assert "not valid YAML" in not_yaml.json()["detail"]
    assert "rules.0.device" in bad_device.json()["detail"]
    shown = (await operator.get("rules")).json()
    assert (shown["source"], shown["yaml"], shown["by"], shown["version"]) == ("upload", RULES, OPERATOR, 1)
    results = [(e["action"], e["result"]) for e in await audit(cloud) if e["action"] == "rules.upload"]
    assert results == [("rules.upload", "ok"), ("rules.upload", "refused"), ("rules.upload", "refused")]


async def test_the_audit_holds_every_action_and_the_api_lists_it_newest_first(
    operator: Operator, cloud: Redis
) -> None:
    await operator.post("test-gift", {})
    await operator.post("control", {"action": "resume", "device": "*"})
    await operator.post("dlq/replay", {"all": True})
    listed = (await operator.get("audit")).json()["entries"]
    assert [e["action"] for e in listed] == ["dlq.replay", "control.resume", "test-gift", "login"]
    assert {e["who"] for e in listed} == {OPERATOR}
    assert len(await audit(cloud)) == 4
    status = (await operator.get("status")).json()
    assert (status["motors"], status["allHeld"], status["backlog"], status["dlqSize"]) == ([], None, 1, 0)


async def test_status_is_the_fleet_status_read_model(operator: Operator, cloud: Redis) -> None:
    """Each motor's report, hold, held work, ledger totals and last done; the queue's backlog, lag and
    rate; a motor silent for longer than the API's offline_after_s setting shows offline."""
    fleet = await two_motors(cloud, time.time_ns() // 1_000_000)
    first = (await operator.get("status")).json()
    assert first["ingestPerS"] is None  # nothing to count against yet
    sent = await operator.post("test-gift", {})
    assert sent.status_code == 202
    status = (await operator.get("status")).json()

    one, two = status["motors"]
    assert (one["device"], one["online"], one["state"], one["hold"], one["heldCommands"]) == (
        "wheel-1",
        True,
        "idle",
        None,
        0,
    )
    assert one["lastDone"] == {"commandId": fleet.done_command, "atMs": fleet.done_at_ms}
    totals = one["totals"]
    assert (totals["accepted"], totals["done"], totals["failed"], totals["outstanding"]) == (6, 4, 2, 0)
    assert (two["device"], two["online"], two["state"], two["heldCommands"]) == ("wheel-2", False, "held", 1)
    assert (two["hold"]["by"], two["hold"]["reason"]) == ("ops", "jam")
    assert (two["totals"]["accepted"], two["totals"]["held"]) == (5, 5)
    # The test gift waits (no worker runs here): the backlog, the lag and the rate count it.
    assert (status["backlog"], status["dlqSize"]) == (1, 0)
    assert [s["stream"] for s in status["streams"]] == [EVENTS_STREAM]
    assert status["workerLagMs"] == status["atMs"] - int(sent.json()["entryId"].split("-")[0])
    assert status["ingestPerS"] == round(1 / status["ingestOverS"], 3)  # one gift since the first read
