"""Fixtures for the ingest API: a real uvicorn on a free port, a real Redis behind it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from cloud.api.app import create_app
from cloud.settings import CloudSettings
from devstack.asgi_server import serve
from devstack.redis_server import RedisServer

API_KEY = "test-key-0123456789abcdef"
WEBHOOK_SECRET = "webhook-secret-0123456789"
METRICS_TOKEN = "metrics-token-0123456789"
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}


def make_settings(redis_url: str, **overrides: Any) -> CloudSettings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "api_keys": API_KEY,
        "webhook_secrets": WEBHOOK_SECRET,
        "metrics": {"token": METRICS_TOKEN},
        **overrides,
    }
    return CloudSettings(**values)


def gift(**fields: Any) -> dict[str, Any]:
    """A valid event in the normalised shape, with any field overridden."""
    event: dict[str, Any] = {
        "event": "gift",
        "platform": "tiktok",
        "userId": "user_123",
        "giftName": "Rose",
        "diamond": 1,
        "quantity": 1,
        "timestamp": int(time.time() * 1000),
    }
    event.update(fields)
    return event


class Api:
    def __init__(self, url: str, client: httpx.AsyncClient) -> None:
        self.url = url
        self.client = client
        self.ws_url = url.replace("http://", "ws://") + "/v1/ingest"
        self.auth = {"Authorization": f"Bearer {API_KEY}"}

    async def post(self, event: Any, **kwargs: Any) -> httpx.Response:
        headers = {**self.auth, **kwargs.pop("headers", {})}
        return await self.client.post("/v1/events", json=event, headers=headers, **kwargs)


ApiFactory = Callable[..., Any]


async def read_metrics(client: httpx.AsyncClient) -> str:
    """The API's /metrics as its scraper reads it (with the metrics token of ``make_settings``)."""
    response = await client.get("/metrics", headers=METRICS_AUTH)
    assert response.status_code == 200, response.text
    return response.text


@pytest.fixture
async def api(redis_server: RedisServer) -> AsyncIterator[Api]:
    settings = make_settings(redis_server.url)
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield Api(url, client)
