"""ThingsBoard's documented REST paths for RPC and telemetry (devstack/tb_emulator/rest_plugins.py):
RpcV1Controller's /api/plugins/rpc and TelemetryController's /api/plugins/telemetry, behind the
tenant login, with ThingsBoard's statuses and bodies (thingsboard/thingsboard application/.../
controller/ @dfe65d5 and v4.3.0.1)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from devstack.tb_emulator.harness import InProcessEmulator
from devstack.tb_emulator.hub import HubSettings
from devstack.tb_emulator.jackson import java_double_to_string
from devstack.tb_emulator.raw_client import RawMqttClient
from devstack.tb_emulator.rest_admin import TENANT_PASSWORD, TENANT_USER
from devstack.tb_emulator.versions import TbVersion
from tests.emulator.conftest import DEVICES

MISSING_ID = "13814000-1dd2-11b2-8080-000000000001"


async def login(client: httpx.AsyncClient) -> None:
    answer = await client.post("/api/auth/login", json={"username": TENANT_USER, "password": TENANT_PASSWORD})
    client.headers["X-Authorization"] = "Bearer " + answer.json()["token"]


@pytest.fixture
async def admin(tb_fast: InProcessEmulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=tb_fast.http_url, timeout=30) as client:
        await login(client)
        yield client


def device_id(tb: InProcessEmulator, name: str) -> str:
    return tb.hub.registry.by_name[name].id


async def sensor_client(tb: InProcessEmulator, *subs: str) -> RawMqttClient:
    client = RawMqttClient(tb.host, tb.mqtt_port)
    assert (await client.connect("sensor-token")).reason_code == 0
    if subs:
        await client.subscribe(*subs)
    return client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/plugins/rpc/twoway/{id}"),
        ("GET", "/api/plugins/telemetry/DEVICE/{id}/values/timeseries"),
        ("GET", "/api/plugins/telemetry/DEVICE/{id}/keys/attributes"),
        ("POST", "/api/plugins/telemetry/{id}/SHARED_SCOPE"),
        ("POST", "/api/plugins/telemetry/DEVICE/{id}/timeseries/ANY"),
    ],
)
async def test_every_plugin_path_needs_the_login(tb_fast: InProcessEmulator, method: str, path: str) -> None:
    async with httpx.AsyncClient(base_url=tb_fast.http_url) as client:
        answer = await client.request(method, path.format(id=device_id(tb_fast, "sensor")), json={"a": 1})
    assert answer.status_code == 401
    assert (answer.json()["message"], answer.json()["errorCode"]) == ("Authentication failed", 10)


# ----------------------------------------------------------------------------- RPC


async def test_two_way_rpc_answered_by_the_device(
    tb_fast: InProcessEmulator, admin: httpx.AsyncClient
) -> None:
    path = f"/api/plugins/rpc/twoway/{device_id(tb_fast, 'sensor')}"
    async with await sensor_client(tb_fast, "v1/devices/me/rpc/request/+") as sensor:
        call = asyncio.create_task(admin.post(path, json={"method": "getTemp", "params": {"unit": "C"}}))
        request = await sensor.next_message()
        assert orjson.loads(request.payload) == {"method": "getTemp", "params": {"unit": "C"}}
        sensor.puback(request.packet_id or 0)
        await sensor.publish(request.topic.replace("request", "response"), b'{"temp": 21.5}')
        answer = await call
    assert (answer.status_code, answer.json()) == (200, {"temp": 21.5})


async def test_one_way_rpc_is_200_without_a_body(
    tb_fast: InProcessEmulator, admin: httpx.AsyncClient
) -> None:
    async with await sensor_client(tb_fast, "v1/devices/me/rpc/request/+"):
        answer = await admin.post(
            f"/api/plugins/rpc/oneway/{device_id(tb_fast, 'sensor')}", json={"method": "blink"}
        )
    assert (answer.status_code, answer.content) == (200, b"")


async def test_rpc_errors_are_v1_statuses(tb_fast: InProcessEmulator, admin: httpx.AsyncClient) -> None:
    """RpcV1Controller: NO_ACTIVE_CONNECTION 409 CONFLICT, TIMEOUT 408 REQUEST_TIMEOUT, no body."""
    path = f"/api/plugins/rpc/twoway/{device_id(tb_fast, 'sensor')}"

    def soon() -> int:  # expirationTime is taken as it is; "timeout" would be at least 5 s
        return int(time.time() * 1000) + 300

    offline = await admin.post(path, json={"method": "a", "expirationTime": soon()})
    assert (offline.status_code, offline.content) == (409, b"")
    async with await sensor_client(tb_fast, "v1/devices/me/rpc/request/+") as sensor:
        silent = await admin.post(path, json={"method": "b", "expirationTime": soon()})
        assert (silent.status_code, silent.content) == (408, b"")
        assert orjson.loads((await sensor.next_message()).payload)["method"] == "b"


async def test_rpc_reply_that_is_not_json_is_406(
    tb_fast: InProcessEmulator, admin: httpx.AsyncClient
) -> None:
    async with await sensor_client(tb_fast, "v1/devices/me/rpc/request/+") as sensor:
        call = asyncio.create_task(
            admin.post(f"/api/plugins/rpc/twoway/{device_id(tb_fast, 'sensor')}", json={"method": "x"})
        )
        request = await sensor.next_message()
        await sensor.publish(request.topic.replace("request", "response"), b"not json")
        assert (await call).status_code == 406


@pytest.mark.parametrize(
    ("device", "body", "status", "shape"),
    [
        ("sensor", b"{bad", 400, ("json", "Invalid request body", 31)),
        ("sensor", b'{"params": {}}', 500, ("json", None, 2)),  # rpcRequestBody.get("method") is null
        ("sensor", b'{"method": "m", "requestUUID": "nope"}', 400, ("json", "Invalid request body", 31)),
        ("sensor", b"", 400, ("json", "Required request body is missing", 31)),
        ("motor_01?", b'{"method": "m"}', 400, ("json", "Invalid UUID string: motor_01", 31)),
        (MISSING_ID, b'{"method": "m"}', 404, ("text", "Device with requested id wasn't found!", None)),
    ],
)
async def test_rpc_request_errors(
    tb_fast: InProcessEmulator,
    admin: httpx.AsyncClient,
    device: str,
    body: bytes,
    status: int,
    shape: tuple[str, str | None, int | None],
) -> None:
    target = device_id(tb_fast, device) if device == "sensor" else device.rstrip("?")
    answer = await admin.post(f"/api/plugins/rpc/twoway/{target}", content=body)
    assert answer.status_code == status
    kind, message, code = shape
    if kind == "text":
        assert answer.text == message
        return
    if message is not None:
        assert answer.json()["message"] == message
    assert answer.json()["errorCode"] == code


# ----------------------------------------------------------------------------- telemetry


async def test_latest_timeseries_keys_and_values(
    tb_fast: InProcessEmulator, admin: httpx.AsyncClient
) -> None:
    async with await sensor_client(tb_fast) as sensor:
        values = b'{"temp": 21.5, "n": 5, "on": true, "e": 1.25e-5, "j": {"a": 1.50}}'
        payload = b'{"ts": 1700000000000, "values": ' + values + b"}"
        assert await sensor.publish("v1/devices/me/telemetry", payload) == 0
    await tb_fast.settled()
    base = f"/api/plugins/telemetry/DEVICE/{device_id(tb_fast, 'sensor')}"
    assert (await admin.get(base + "/keys/timeseries")).json() == ["temp", "n", "on", "e", "j"]
    loose = (await admin.get(base + "/values/timeseries")).json()
    assert {key: entries[0]["value"] for key, entries in loose.items()} == {
        "temp": "21.5",  # getValueAsString: Double.toString
        "n": "5",
        "on": "true",
        "e": "1.25E-5",
        "j": '{"a":1.50}',
    }
    strict = (
        await admin.get(
            base + "/values/timeseries", params={"keys": "temp,j,none", "useStrictDataTypes": "true"}
        )
    ).json()
    assert strict["temp"] == [{"ts": 1700000000000, "value": 21.5}]
    assert strict["j"] == [{"ts": 1700000000000, "value": {"a": 1.5}}]
    assert strict["none"][0]["value"] is None  # findLatest: a key never saved is a null at "now"


@pytest.mark.parametrize("version", [TbVersion.V4_3, TbVersion.V4_4])
async def test_timeseries_history_per_version(version: TbVersion) -> None:
    """4.4 (dfe65d5): startTs and endTs select the history, and /history exists; 4.3 needs keys too."""
    async with (
        InProcessEmulator(DEVICES, hub_settings=HubSettings(thingsboard_version=version)) as tb,
        httpx.AsyncClient(base_url=tb.http_url) as admin,
    ):
        await login(admin)
        async with await sensor_client(tb) as sensor:
            for ts in (1000, 2000, 3000, 4000):
                body = orjson.dumps({"ts": ts, "values": {"t": ts / 100}})
                assert await sensor.publish("v1/devices/me/telemetry", body) == 0
        await tb.settled()
        base = f"/api/plugins/telemetry/DEVICE/{device_id(tb, 'sensor')}/values/timeseries"
        window: dict[str, Any] = {"keys": "t", "startTs": 1000, "endTs": 4000, "limit": 2}
        history = (await admin.get(base, params=window)).json()
        assert history == {"t": [{"ts": 3000, "value": "30.0"}, {"ts": 2000, "value": "20.0"}]}
        ascending = (await admin.get(base, params={**window, "orderBy": "ASC", "limit": 10})).json()
        assert [e["ts"] for e in ascending["t"]] == [1000, 2000, 3000]
        without_keys = (await admin.get(base, params={"startTs": 1000, "endTs": 4000})).json()
        path_history = await admin.get(base + "/history", params=window)
        if version is TbVersion.V4_4:
            assert without_keys == {}  # the history of no key
            assert path_history.json() == history
        else:
            assert without_keys == {"t": [{"ts": 4000, "value": "40.0"}]}  # the latest values
            assert path_history.status_code == 404


async def test_attributes_saved_read_and_pushed(tb_fast: InProcessEmulator, admin: httpx.AsyncClient) -> None:
    sensor_id = device_id(tb_fast, "sensor")
    async with await sensor_client(tb_fast, "v1/devices/me/attributes") as sensor:
        saved = await admin.post(f"/api/plugins/telemetry/{sensor_id}/SHARED_SCOPE", json={"interval": 10})
        assert (saved.status_code, saved.content) == (200, b"")
        pushed = await sensor.next_message()
        assert (pushed.topic, orjson.loads(pushed.payload)) == ("v1/devices/me/attributes", {"interval": 10})
        assert await sensor.publish("v1/devices/me/attributes", b'{"fw": "1.2"}') == 0
    await tb_fast.settled()
    server = await admin.post(
        f"/api/plugins/telemetry/DEVICE/{sensor_id}/attributes/SERVER_SCOPE", json={"site": {"row": 3}}
    )
    assert server.status_code == 200
    base = f"/api/plugins/telemetry/DEVICE/{sensor_id}"
    assert (await admin.get(base + "/keys/attributes")).json() == ["fw", "site", "interval"]
    assert (await admin.get(base + "/keys/attributes/SHARED_SCOPE")).json() == ["interval"]
    values = (await admin.get(base + "/values/attributes", params={"keys": "interval,fw,nope"})).json()
    assert [(v["key"], v["value"]) for v in values] == [("fw", 1.2), ("interval", 10)]
    assert all(v["lastUpdateTs"] > 1_700_000_000_000 for v in values)
    [site] = (await admin.get(base + "/values/attributes/SERVER_SCOPE")).json()
    assert (site["key"], site["value"]) == ("site", {"row": 3})


@pytest.mark.parametrize(
    ("path", "body", "status", "answer"),
    [
        ("/{id}/CLIENT_SCOPE", b'{"a": 1}', 400, "Invalid scope: CLIENT_SCOPE"),
        ("/{id}/SHARED_SCOPE", b"[1]", 400, "Request is not a JSON object"),
        ("/{id}/SHARED_SCOPE", b"{}", 400, "No attributes data found in request body!"),
        ("/{id}/SHARED_SCOPE", b'{" ": 1}', 400, "Key cannot be blank"),
        ("/{id}/SHARED_SCOPE", b'{"a": null}', 500, None),  # convertToAttributes refuses a null
        (
            "/DEVICE/{id}/timeseries/ANY",
            b'{"a": null}',
            400,
            "Unable to parse time series payload. Invalid JSON body: ",
        ),
        ("/DEVICE/{id}/timeseries/ANY", b"{}", 400, "No time series data found in request body!"),
        (
            "/DEVICE/{id}/timeseries/ANY",
            b"{x",
            400,
            "Unable to parse time series payload: Invalid JSON body!",
        ),
        ("/device/{id}/timeseries/ANY", b'{"a": 1}', 400, None),  # EntityType.valueOf is exact
        (
            "/DEVICE/" + MISSING_ID + "/timeseries/ANY",
            b'{"a": 1}',
            404,
            "Device with requested id wasn't found!",
        ),
    ],
)
async def test_save_refusals(
    tb_fast: InProcessEmulator,
    admin: httpx.AsyncClient,
    path: str,
    body: bytes,
    status: int,
    answer: str | None,
) -> None:
    reply = await admin.post(
        "/api/plugins/telemetry" + path.format(id=device_id(tb_fast, "sensor")), content=body
    )
    assert reply.status_code == status
    if answer is not None:
        assert reply.text.startswith(answer)


async def test_saved_timeseries_is_stored_without_the_rule_engine(
    tb_fast: InProcessEmulator, admin: httpx.AsyncClient
) -> None:
    processed = sum(c.processed for c in tb_fast.hub.chains.values())
    body = [{"ts": 1700000000000, "values": {"t": 1, "s": "2"}}, {"ts": 1700000000000, "values": {"u": 3}}]
    path = f"/api/plugins/telemetry/DEVICE/{device_id(tb_fast, 'sensor')}/timeseries/ANY/86400"
    assert (await admin.post(path, json=body)).status_code == 200
    sensor = tb_fast.hub.registry.by_name["sensor"]
    assert {k: sensor.latest[k] for k in ("t", "s", "u")} == {
        "t": (1700000000000, 1),
        "s": (1700000000000, 2),  # type cast, as JsonConverter does
        "u": (1700000000000, 3),
    }
    assert sum(c.processed for c in tb_fast.hub.chains.values()) == processed


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (21.5, "21.5"),
        (100.0, "100.0"),
        (0.001, "0.001"),
        (9999999.0, "9999999.0"),
        (1e7, "1.0E7"),
        (1.5e-4, "1.5E-4"),
        (123456789.0, "1.23456789E8"),
        (-0.0, "-0.0"),
        (0.1 + 0.2, "0.30000000000000004"),
        (float("inf"), "Infinity"),
        (1e23, "1.0E23"),
        (5e-324, "4.9E-324"),
        (2e-3, "0.002"),
        (1e-5, "1.0E-5"),
    ],
)
def test_java_double_to_string(value: float, text: str) -> None:
    """Double.toString, as the latest values print a double without useStrictDataTypes (each checked
    against JDK 25's)."""
    assert java_double_to_string(value) == text


async def test_persistent_rpc_answers_its_id(tb_fast: InProcessEmulator, admin: httpx.AsyncClient) -> None:
    path = f"/api/plugins/rpc/oneway/{device_id(tb_fast, 'sensor')}"
    answer = await admin.post(path, json={"method": "reboot", "persistent": "true", "timeout": 60000})
    assert answer.status_code == 200
    assert tb_fast.hub.rpc.records[answer.json()["rpcId"]].persistent  # asBoolean of the text "true"
