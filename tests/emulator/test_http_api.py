"""The emulator's HTTP side as served (devstack/tb_emulator/rest.py on Starlette): what no handler
answers, bodies over the limit, bodies that are not JSON, and the plain and JSON bodies
ThingsBoard's controllers answer."""

from __future__ import annotations

import httpx

from devstack.tb_emulator.harness import InProcessEmulator
from devstack.tb_emulator.rest import MAX_BODY_BYTES


async def test_unknown_paths_other_methods_and_big_bodies_answer_json(tb: InProcessEmulator) -> None:
    async with httpx.AsyncClient(base_url=tb.http_url) as client:
        missing = await client.get("/api/nothing")
        assert (missing.status_code, missing.json()) == (404, {"error": "no route /api/nothing"})
        slash = await client.get("/api/devices/")  # no redirect to /api/devices
        assert (slash.status_code, slash.json()) == (404, {"error": "no route /api/devices/"})
        other = await client.delete("/api/faults")
        assert (other.status_code, other.json()) == (405, {"error": "DELETE not allowed on /api/faults"})
        big = await client.patch("/api/faults", content=b" " * (MAX_BODY_BYTES + 1))
        assert (big.status_code, big.json()) == (413, {"error": "body too large"})
        bad = await client.patch("/api/faults", content=b"{")
        assert bad.status_code == 400
        assert bad.json()["error"].startswith("body is not JSON")


async def test_answers_keep_their_content_types(tb: InProcessEmulator) -> None:
    async with httpx.AsyncClient(base_url=tb.http_url) as client:
        device = await client.get("/api/devices/motor 01")
        assert (device.status_code, device.headers["content-type"]) == (404, "application/json")
        assert device.json() == {"error": "device 'motor 01' not found"}
        login = await client.post(
            "/api/auth/login", json={"username": "tenant@thingsboard.org", "password": "tenant"}
        )
        client.headers["X-Authorization"] = "Bearer " + login.json()["token"]
        too_long = await client.get(
            f"/api/plugins/telemetry/DEVICE/{tb.hub.registry.by_name['motor_01'].id}0/keys/attributes"
        )
        assert (too_long.status_code, too_long.headers["content-type"]) == (400, "application/json")
        assert too_long.json()["message"] == "UUID string too large"
        missing = await client.get(
            "/api/plugins/telemetry/DEVICE/13814000-1dd2-11b2-8080-000000000001/keys/attributes"
        )
        assert (missing.status_code, missing.headers["content-type"]) == (404, "text/plain;charset=UTF-8")
        assert missing.text == "Device with requested id wasn't found!"
