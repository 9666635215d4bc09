"""When events cannot be stored in time, ingest says so (503 + Retry-After); it never pretends."""

from __future__ import annotations

import os
import signal
from typing import Any

import httpx
import orjson
import websockets
from redis.asyncio import Redis

from cloud.api.app import create_app
from devstack.asgi_server import serve
from devstack.redis_server import RedisServer
from giftwheel.contracts import EVENTS_STREAM, WORKER_GROUP
from tests.ingest.conftest import API_KEY, Api, gift, make_settings, read_metrics

AUTH = {"Authorization": f"Bearer {API_KEY}"}


async def test_backlog_over_bound_is_503_and_nothing_is_trimmed(
    redis_server: RedisServer, redis: Redis
) -> None:
    settings = make_settings(redis_server.url, ingest={"backlog_max": 3, "backlog_poll_interval_s": 0.05})
    await redis.xgroup_create(EVENTS_STREAM, WORKER_GROUP, id="0", mkstream=True)
    async with (
        serve(create_app(settings)) as url,
        httpx.AsyncClient(base_url=url) as client,
    ):
        # The monitor polls in the background: events are accepted until it sees the backlog.
        accepted = 0
        for n in range(200):
            refused = await client.post("/v1/events", json=gift(eventId=f"bp:{n}"), headers=AUTH)
            if refused.status_code != 202:
                break
            accepted += 1
        assert accepted >= 4
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "2"
        assert refused.json()["error"] == "backlog"
        batch = await client.post("/v1/events/batch", json={"events": [gift()]}, headers=AUTH)
        assert batch.status_code == 503
        # A worker consumes: the backlog shrinks and ingest accepts again.
        read: Any = await redis.xreadgroup(WORKER_GROUP, "w1", {EVENTS_STREAM: ">"})
        ids = [entry_id for _, entries in read for entry_id, _ in entries]
        await redis.xack(EVENTS_STREAM, WORKER_GROUP, *ids)
        for _ in range(100):
            again = await client.post("/v1/events", json=gift(eventId="bp:late"), headers=AUTH)
            if again.status_code == 202:
                break
        assert again.status_code == 202
    assert await redis.xlen(EVENTS_STREAM) == accepted + 1


async def test_redis_down_is_503_on_readyz_and_ingest(api: Api, redis_server: RedisServer) -> None:
    assert (await api.client.get("/readyz")).status_code == 200
    redis_server.kill()
    ready = await api.client.get("/readyz")
    assert ready.status_code == 503
    response = await api.post(gift(eventId="down:1"))
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert "retry-after" in response.headers
    batch = await api.client.post("/v1/events/batch", json={"events": [gift()]}, headers=api.auth)
    assert batch.status_code == 503
    assert (await api.client.get("/healthz")).status_code == 200
    # Redis comes back (empty: it kept nothing): the retry is stored, exactly once.
    redis_server.start()
    assert (await api.post(gift(eventId="down:1"))).status_code == 202
    assert (await api.client.get("/readyz")).status_code == 200
    check = Redis.from_url(redis_server.url)
    assert await check.xlen(EVENTS_STREAM) == 1
    await check.aclose()


async def test_a_503_during_a_redis_pause_may_have_stored_the_event(
    redis_server: RedisServer, redis: Redis
) -> None:
    """A write Redis received but answered too late is a 503 and still stored: the 503 says so,
    and the retry with the same eventId is a duplicate. The answer never shows where Redis is."""
    settings = make_settings(redis_server.url, redis={"socket_timeout_s": 0.5})
    assert redis_server.pid is not None
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        assert (
            await client.post("/v1/events", json=gift(eventId="pause:0"), headers=AUTH)
        ).status_code == 202
        paused = gift(eventId="pause:1")
        os.kill(redis_server.pid, signal.SIGSTOP)
        try:
            response = await client.post("/v1/events", json=paused, headers=AUTH)
        finally:
            os.kill(redis_server.pid, signal.SIGCONT)
        assert response.status_code == 503
        assert "may have been stored" in response.json()["detail"]
        assert str(redis_server.port) not in response.text
        retry = await client.post("/v1/events", json=paused, headers=AUTH)
        assert (retry.status_code, retry.json()["duplicate"]) == (200, True)
        spec = (await client.get("/openapi.json")).json()
        for path in ("/v1/events", "/v1/events/batch"):
            assert "may have been stored" in spec["paths"][path]["post"]["responses"]["503"]["description"]
    assert await redis.xlen(EVENTS_STREAM) == 2


async def test_503_bodies_do_not_show_where_redis_is(api: Api, redis_server: RedisServer) -> None:
    redis_server.kill()
    single = await api.post(gift(eventId="down:where"))
    batch = await api.client.post("/v1/events/batch", json={"events": [gift()]}, headers=api.auth)
    async with websockets.connect(api.ws_url, additional_headers=api.auth) as ws:
        await ws.send(orjson.dumps(gift()).decode())
        ack = await ws.recv()
    for status, text in ((single.status_code, single.text), (batch.status_code, batch.text), (503, ack)):
        assert status == 503
        assert "unavailable" in text
        assert str(redis_server.port) not in text
        assert "127.0.0.1" not in text


async def test_a_refused_write_answers_each_item_and_counts_each_reason_on_both_transports(
    api: Api, redis_server: RedisServer
) -> None:
    """One valid and one invalid item while Redis is down: the invalid one is refused for itself,
    the valid one by the queue, and each is counted once under its reason, batch or frame."""
    redis_server.kill()
    items = [gift(eventId="mixed:1"), {"eventId": 3}]
    batch = await api.client.post("/v1/events/batch", json={"events": items}, headers=api.auth)
    assert (batch.status_code, batch.json()["error"], batch.headers["retry-after"]) == (
        503,
        "unavailable",
        "2",
    )
    async with websockets.connect(api.ws_url, additional_headers=api.auth) as ws:
        await ws.send(orjson.dumps(items).decode())
        acks = orjson.loads(await ws.recv())
    assert [(ack["seq"], ack["error"], ack.get("retryAfter")) for ack in acks] == [
        (0, "unavailable", 2),
        (1, "rejected", None),
    ]
    assert acks[1]["detail"][0]["field"] == "eventId"
    text = await read_metrics(api.client)
    for endpoint in ("batch", "websocket"):
        for reason in ("invalid", "unavailable"):
            counted = f'giftwheel_ingest_rejected_total{{endpoint="{endpoint}",reason="{reason}"}} 1.0'
            assert counted in text, (endpoint, reason)
