"""What the API shows besides its answers: /metrics only to its scraper, overlay pages that run
nothing foreign and are never sniffed, viewers only from the same origin, scheme included."""

from __future__ import annotations

import httpx
import pytest
from structlog.testing import capture_logs
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from cloud.api.app import create_app
from cloud.settings import CloudSettings
from devstack.asgi_server import serve
from devstack.redis_server import RedisServer
from tests.ingest.conftest import API_KEY, Api, read_metrics


async def test_metrics_need_the_token(api: Api) -> None:
    assert (await api.client.get("/metrics")).status_code == 401
    wrong = {"Authorization": "Bearer not-the-token-0123456789"}
    assert (await api.client.get("/metrics", headers=wrong)).status_code == 401
    assert (await api.client.get("/metrics", headers=api.auth)).status_code == 401  # an ingest key is not it
    assert "giftwheel_ingest_accepted_total" in await read_metrics(api.client)


@pytest.mark.parametrize(("mode", "status"), [("production", 403), ("development", 200)])
async def test_without_a_token_metrics_are_served_only_in_development(
    redis_server: RedisServer, mode: str, status: int
) -> None:
    settings = CloudSettings(redis_url=redis_server.url, api_keys=API_KEY, mode=mode)
    with capture_logs() as logs:
        async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/metrics")
    assert response.status_code == status
    said_at_start = any("GIFTWHEEL_METRICS__TOKEN" in entry["event"] for entry in logs)
    assert said_at_start == (status == 403)
    if status == 403:
        assert "GIFTWHEEL_METRICS__TOKEN" in response.json()["detail"]


@pytest.mark.parametrize("path", ["/overlay", "/overlay/overlay.js", "/overlay/overlay.css", "/overlay/x"])
async def test_overlay_pages_run_only_their_own_code_and_are_never_sniffed(api: Api, path: str) -> None:
    response = await api.client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    policy = response.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'self'" in policy
    assert "connect-src 'self'" in policy


async def test_the_same_origin_is_the_same_scheme_too(api: Api) -> None:
    host = api.url.removeprefix("http://")
    viewers = f"ws://{host}/v1/realtime"
    async with connect(viewers, origin=f"http://{host}") as same:  # type: ignore[arg-type]
        assert "state" in str(await same.recv())
    with pytest.raises(InvalidStatus):
        async with connect(viewers, origin=f"https://{host}"):  # type: ignore[arg-type]
            pass
