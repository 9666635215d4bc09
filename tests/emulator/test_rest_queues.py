"""ThingsBoard's queue endpoints in the emulator (devstack/tb_emulator/rest_queues.py) and the system
administrator's login: who may read and save queues, what a save answers and refuses (QueueController,
DefaultTbQueueService, QueueValidator, thingsboard/thingsboard @dfe65d5 and v4.3.0.1), that the
sysadmin cannot use the tenant endpoints, and that a queue saved over REST runs at once: a profile may
name it, its devices' messages go through it, and an update of its settings takes effect."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest

from devstack.tb_emulator.harness import SHIPPED_QUEUES, InProcessEmulator
from devstack.tb_emulator.rest_admin import (
    SYS_TENANT_ID,
    SYSADMIN_PASSWORD,
    SYSADMIN_USER,
    TENANT_PASSWORD,
    TENANT_USER,
)
from tests.emulator.conftest import DEVICES
from tests.emulator.test_rule_chain import CaptureServer
from tests.emulator.test_rule_engine_queues import REFUSED, gateway, post_telemetry, posts_by_device

RULE_ENGINE = {"serviceType": "TB_RULE_ENGINE"}
PAGE: dict[str, str | int] = {**RULE_ENGINE, "pageSize": 100, "page": 0}
DENIED = ("You don't have permission to perform this operation!", 20)


def new_queue(name: str = "Extra", **changes: Any) -> dict[str, Any]:
    """A queue as the UI would POST it: the shipped feedback queue under another name and topic."""
    body = json.loads(SHIPPED_QUEUES[1].read_text())
    return {**body, "name": name, "topic": f"tb_rule_engine.{name.lower()}", **changes}


@asynccontextmanager
async def client(
    tb: InProcessEmulator, user: str | None = None, password: str = ""
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the emulator, logged in as ``user`` if given."""
    async with httpx.AsyncClient(base_url=tb.http_url, timeout=30) as http:
        if user is not None:
            answer = await http.post("/api/auth/login", json={"username": user, "password": password})
            assert answer.status_code == 200
            http.headers["X-Authorization"] = "Bearer " + answer.json()["token"]
        yield http


@pytest.fixture
async def sysadmin(tb_fast: InProcessEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with client(tb_fast, SYSADMIN_USER, SYSADMIN_PASSWORD) as http:
        yield http


@pytest.fixture
async def tenant(tb_fast: InProcessEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with client(tb_fast, TENANT_USER, TENANT_PASSWORD) as http:
        yield http


def error(answer: httpx.Response) -> tuple[str, int]:
    return answer.json()["message"], answer.json()["errorCode"]


# ----------------------------------------------------------------------------- who may do what


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/queues"), ("GET", "/api/queues/name/Main"), ("POST", "/api/queues")],
)
async def test_queue_paths_need_a_login(tb_fast: InProcessEmulator, method: str, path: str) -> None:
    async with client(tb_fast) as http:
        answer = await http.request(method, path, params=PAGE, json=new_queue())
    assert answer.status_code == 401
    assert error(answer) == ("Authentication failed", 10)


async def test_a_tenant_administrator_reads_the_queues_but_may_not_save_one(
    tenant: httpx.AsyncClient,
) -> None:
    listed = await tenant.get("/api/queues", params=PAGE)
    assert listed.status_code == 200
    names = [q["name"] for q in listed.json()["data"]]
    assert set(names) == {
        "Main",
        "HighPriority",
        "SequentialByOriginator",
        "GiftwheelDispatch",
        "GiftwheelFeedback",
    }
    assert (await tenant.get("/api/queues/name/Main")).json()["topic"] == "tb_rule_engine.main"
    saved = await tenant.post("/api/queues", params=RULE_ENGINE, json=new_queue())
    assert saved.status_code == 403
    assert error(saved) == DENIED
    main = (await tenant.get("/api/queues/name/Main")).json()
    changed = await tenant.post("/api/queues", params=RULE_ENGINE, json={**main, "pollInterval": 1})
    assert changed.status_code == 403


@pytest.mark.parametrize(
    ("method", "path", "params"),
    [
        ("GET", "/api/deviceProfiles", {"pageSize": 10, "page": 0}),
        ("GET", "/api/tenant/devices", {"deviceName": "sensor"}),
        ("POST", "/api/device", {}),
        ("GET", "/api/ruleChains", {"pageSize": 10, "page": 0}),
        ("POST", "/api/deviceProfile", {}),
    ],
)
async def test_the_system_administrator_may_not_use_the_tenant_endpoints(
    sysadmin: httpx.AsyncClient, method: str, path: str, params: dict[str, Any]
) -> None:
    """Their controllers' @PreAuthorize admit TENANT_ADMIN (and CUSTOMER_USER) only."""
    answer = await sysadmin.request(method, path, params=params, json={"name": "x"})
    assert answer.status_code == 403
    assert error(answer) == DENIED


async def test_the_system_administrator_may_not_touch_a_device(
    tb_fast: InProcessEmulator, sysadmin: httpx.AsyncClient
) -> None:
    """TelemetryController admits SYS_ADMIN, AccessValidator.validateDevice then refuses it."""
    device = tb_fast.hub.registry.by_name["sensor"].id
    answer = await sysadmin.get(f"/api/plugins/telemetry/DEVICE/{device}/values/timeseries")
    assert answer.status_code == 403
    assert answer.text == "System administrator is not allowed to perform this operation!"


async def test_a_wrong_sysadmin_password_is_refused(tb_fast: InProcessEmulator) -> None:
    async with client(tb_fast) as http:
        answer = await http.post("/api/auth/login", json={"username": SYSADMIN_USER, "password": "tenant"})
    assert answer.status_code == 401
    assert error(answer) == ("Invalid username or password", 10)


# ----------------------------------------------------------------------------- saving a queue


async def test_a_created_queue_as_thingsboard_answers_it(sysadmin: httpx.AsyncClient) -> None:
    body = new_queue(createdTime=1, tenantId={"entityType": "TENANT", "id": str(uuid.uuid4())}, extra=True)
    answer = await sysadmin.post("/api/queues", params=RULE_ENGINE, json=body)
    assert answer.status_code == 200
    saved = answer.json()
    assert saved["id"]["entityType"] == "QUEUE"
    assert uuid.UUID(saved["id"]["id"]).version == 1  # time-based, as JpaAbstractDao makes it
    assert saved["createdTime"] > 1  # set on create, whatever was sent
    assert saved["tenantId"] == {"entityType": "TENANT", "id": SYS_TENANT_ID}  # the system's queue
    assert "extra" not in saved  # a property a Queue does not have is ignored
    expected = new_queue()
    assert {k: saved[k] for k in expected} == expected
    assert saved["processingStrategy"]["failurePercentage"] == 0.0
    assert (await sysadmin.get("/api/queues/name/Extra")).json() == saved


async def test_an_update_keeps_the_id_and_changes_the_settings(sysadmin: httpx.AsyncClient) -> None:
    created = (await sysadmin.post("/api/queues", params=RULE_ENGINE, json=new_queue())).json()
    answer = await sysadmin.post("/api/queues", params=RULE_ENGINE, json={**created, "pollInterval": 50})
    assert answer.status_code == 200
    assert (answer.json()["id"], answer.json()["createdTime"], answer.json()["pollInterval"]) == (
        created["id"],
        created["createdTime"],
        50,
    )


async def test_a_null_number_is_its_java_default(sysadmin: httpx.AsyncClient) -> None:
    """Jackson leaves a primitive null at 0: QueueValidator then refuses the 0."""
    answer = await sysadmin.post("/api/queues", params=RULE_ENGINE, json=new_queue(partitions=None))
    assert answer.status_code == 400
    assert error(answer) == ("Queue partitions should be more then 0!", 31)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (new_queue(name="GiftwheelFeedback"), "Queue with name: GiftwheelFeedback already exists!"),
        (new_queue(topic="tb_rule_engine.main"), "Queue with topic: tb_rule_engine.main already exists!"),
        (new_queue(pollInterval=0), "Queue poll interval should be more then 0!"),
        (new_queue(name="bad name"), "Queue name contains a character other than ASCII alphanumerics"),
        (new_queue(name="CalculatedFields"), "This name is reserved for internal use. Please choose"),
        (new_queue(name="n" * 256), "Validation error: name length must be equal or less than 255"),
        (new_queue(submitStrategy=None), "Queue submit strategy can't be null!"),
    ],
)
async def test_what_a_new_queue_may_not_be(
    sysadmin: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    answer = await sysadmin.post("/api/queues", params=RULE_ENGINE, json=body)
    assert answer.status_code == 400
    assert message in answer.json()["message"]
    assert answer.json()["errorCode"] == 31


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Renamed"}, "Queue name can't be changed!"),
        ({"topic": "tb_rule_engine.renamed"}, "Queue topic can't be changed!"),
    ],
)
async def test_name_and_topic_cannot_change(
    sysadmin: httpx.AsyncClient, change: dict[str, Any], message: str
) -> None:
    current = (await sysadmin.get("/api/queues/name/GiftwheelFeedback")).json()
    answer = await sysadmin.post("/api/queues", params=RULE_ENGINE, json={**current, **change})
    assert (answer.status_code, error(answer)) == (400, (message, 31))


async def test_an_update_of_a_queue_that_does_not_exist_is_404(sysadmin: httpx.AsyncClient) -> None:
    missing = str(uuid.uuid4())
    body = new_queue(id={"entityType": "QUEUE", "id": missing})
    answer = await sysadmin.post("/api/queues", params=RULE_ENGINE, json=body)
    assert (answer.status_code, error(answer)) == (404, (f"Queue with id [{missing}] is not found", 32))


async def test_the_service_type_as_queuecontroller_reads_it(
    tb_fast: InProcessEmulator, sysadmin: httpx.AsyncClient
) -> None:
    body = new_queue()
    missing = await sysadmin.post("/api/queues", json=body)
    assert missing.status_code == 400
    unknown = await sysadmin.post("/api/queues", params={"serviceType": "no-such"}, json=body)
    assert error(unknown) == (
        "No enum constant org.thingsboard.server.common.msg.queue.ServiceType.NO_SUCH",
        31,
    )
    blank = await sysadmin.post("/api/queues", params={"serviceType": " "}, json=body)
    assert error(blank) == ("Parameter 'serviceType' can't be empty!", 31)
    core = await sysadmin.post("/api/queues", params={"serviceType": "tb-core"}, json=body)
    assert (core.status_code, core.content) == (200, b"")  # saves nothing, answers null
    assert "Extra" not in tb_fast.hub.queues.by_name
    page = await sysadmin.get("/api/queues", params={**PAGE, "serviceType": "TB_CORE"})
    assert page.json() == {"data": [], "totalPages": 0, "totalElements": 0, "hasNext": False}
    lost = await sysadmin.get("/api/queues/name/Nope")
    assert (lost.status_code, error(lost)) == (404, ("Requested item wasn't found!", 32))


# ----------------------------------------------------------------------------- a saved queue runs


async def test_a_queue_saved_over_rest_carries_a_profiles_messages_and_its_updates_take_effect() -> None:
    """Before the queue exists a profile may not name it; created over REST it runs, the motor profile
    names it, and a motor's telemetry goes through it; then a sysadmin turns its processing strategy
    from skipping to retrying, and the next refused webhook is retried."""
    api = CaptureServer(status_for=lambda r: REFUSED)
    skipping = new_queue("Feedback", partitions=1, processingStrategy={"type": "SKIP_ALL_FAILURES"})
    async with (
        api as url,
        InProcessEmulator(DEVICES, queues=(), webhook_url=url) as tb,
        client(tb, SYSADMIN_USER, SYSADMIN_PASSWORD) as sysadmin,
        client(tb, TENANT_USER, TENANT_PASSWORD) as tenant,
    ):
        motor = {"name": "motor", "defaultQueueName": "Feedback"}
        refused = await tenant.post("/api/deviceProfile", json=motor)
        assert error(refused) == ("Device profile is referencing to non-existent queue!", 31)
        created = (await sysadmin.post("/api/queues", params=RULE_ENGINE, json=skipping)).json()
        assert (await tenant.post("/api/deviceProfile", json=motor)).status_code == 200
        async with await gateway(tb) as gw:
            await post_telemetry(gw, {"motor_01": [{"roundsCompleted": 1}]})
            await tb.settled()
            assert posts_by_device(api) == {"motor_01": 1}  # skipped, not retried
            retrying = {
                **created,
                "processingStrategy": {"type": "RETRY_FAILED", "retries": 2, "failurePercentage": 0,
                                       "pauseBetweenRetries": 0, "maxPauseBetweenRetries": 0},
            }  # fmt: skip
            assert (await sysadmin.post("/api/queues", params=RULE_ENGINE, json=retrying)).status_code == 200
            await post_telemetry(gw, {"motor_01": [{"roundsCompleted": 2}]})
            await tb.settled()
        stats = tb.hub.queues.by_name["Feedback"].stats
    assert posts_by_device(api) == {"motor_01": 1 + 3}  # the second message: three attempts
    assert stats.retries == 2
    assert stats.msgs >= 2  # both telemetry messages (and the motor's other messages) went through it
