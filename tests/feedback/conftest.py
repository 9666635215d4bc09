"""Fixtures for the feedback webhook and the viewer fan-out: real uvicorn, real Redis, real sockets."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Self

import httpx
import orjson
import pytest
from fastapi import FastAPI
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect

from cloud.api.app import create_app
from cloud.api.cli import websocket_options
from cloud.api.state import Services
from cloud.ledger.store import Command, Ledger
from cloud.settings import CloudSettings
from devstack.asgi_server import serve
from devstack.redis_server import RedisServer
from giftwheel.contracts import event_streams
from giftwheel.contracts.motor import command_id_for
from tests.ingest.conftest import API_KEY, read_metrics
from tests.ingest.conftest import gift as ingest_gift
from tests.ingest.conftest import make_settings as ingest_settings

FEEDBACK_SECRET = "feedback-secret-0123456789"
STREAM = event_streams(1)[0]  # the ledger shard of the default settings (one stream)
# The commands `known_motors` puts in the ledger: the webhook shows only what the ledger knows.
KNOWN_EVENTS = {"motor_01": "tiktok:known-01", "motor_02": "tiktok:known-02"}
KNOWN_COMMANDS = {device: command_id_for([event_id]) for device, event_id in KNOWN_EVENTS.items()}
COMMAND_ID = KNOWN_COMMANDS["motor_01"]


def make_settings(redis_url: str, **overrides: Any) -> CloudSettings:
    """Every progress update published as it comes (no pacing) unless a test asks for pacing."""
    realtime = {"progress_publish_interval_s": 0, **overrides.pop("realtime", {})}
    return ingest_settings(
        redis_url, **{"feedback": {"secret": FEEDBACK_SECRET}, "realtime": realtime, **overrides}
    )


def gift(**fields: Any) -> dict[str, Any]:
    return ingest_gift(**{"userName": "Ada", **fields})


def progress(
    done: int, rounds: int = 5, *, command_id: str = COMMAND_ID, queued: int | None = None
) -> dict[str, Any]:
    """Telemetry as the edge reports a finished round (edge/buffer/scripts.py ROUND_DONE)."""
    body: dict[str, Any] = {
        "roundsCompleted": done,
        "commandId": command_id,
        "commandRounds": rounds,
        "commandRoundsDone": done,
        "commandDone": done >= rounds,
        "queuedRounds": rounds - done if queued is None else queued,
        "state": "running" if done < rounds else "idle",
    }
    return body


class Api:
    """One API instance seen from outside: HTTP for gifts and feedback, WebSocket for viewers."""

    def __init__(self, url: str, client: httpx.AsyncClient, app: FastAPI | None = None) -> None:
        self.url = url
        self.client = client
        self.app = app

    async def post_gift(self, **fields: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        return await self.client.post("/v1/events", json=gift(**fields), headers=headers)

    async def post_feedback(
        self,
        body: Any,
        *,
        device: str | None = "motor_01",
        secret: str | None = FEEDBACK_SECRET,
        ts_ms: int | bytes | None = None,
        raw: bytes | None = None,
    ) -> httpx.Response:
        """What the rule chain's REST API call node sends (deploy/thingsboard/, headers from metadata)."""
        headers: dict[str, Any] = {"Content-Type": "application/json"}  # httpx takes str or bytes
        if secret is not None:
            headers["X-Giftwheel-Secret"] = secret
        if device is not None:
            headers["X-Device-Name"] = device
        headers["X-Device-Type"] = "motor"
        ts = ts_ms if ts_ms is not None else int(time.time() * 1000)
        headers["X-Telemetry-Ts"] = ts if isinstance(ts, bytes) else str(ts)  # bytes: sent as they are
        content = raw if raw is not None else orjson.dumps(body)
        return await self.client.post("/v1/feedback/thingsboard", content=content, headers=headers)

    def services(self) -> Services:
        """What the routes share, for a test that looks inside an API served in this process."""
        assert self.app is not None
        found: Services = self.app.state.services
        return found

    def viewer_url(self, query: str = "") -> str:
        return self.url.replace("http://", "ws://") + "/v1/realtime" + query


async def frames_by_path(api: Api) -> dict[str, float]:
    """giftwheel_realtime_frames_total by path, from the API's /metrics."""
    text = await read_metrics(api.client)
    found = re.findall(r'^giftwheel_realtime_frames_total\{path="(\w+)"\} (\S+)$', text, re.M)
    return {path: float(value) for path, value in found}


class Viewer:
    """A plain-WebSocket viewer that records every event it receives."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, **options: Any) -> Self:
        return cls(await connect(url, **options))

    async def _read(self) -> None:
        with contextlib.suppress(Exception):
            async for frame in self.ws:
                parsed = orjson.loads(frame)
                async with self._changed:
                    self.events.extend(parsed if isinstance(parsed, list) else [parsed])
                    self._changed.notify_all()

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e["data"] for e in self.events if e["event"] == event]

    async def wait_for(self, event: str, count: int = 1, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        await self.wait_until(lambda: len(self.named(event)) >= count, timeout_s)
        return self.named(event)

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s), self._changed:
            await self._changed.wait_for(predicate)

    async def close(self) -> None:
        await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@pytest.fixture
async def known_motors(ledger: Ledger) -> None:
    """motor_01 and motor_02 as after the worker sent each a command (motor_01's is COMMAND_ID).

    Both commands are done already, so they leave the ledger's outstanding rounds as they were.
    """
    for device, event_id in KNOWN_EVENTS.items():
        command = await new_command(ledger, event_id, 5, device)
        await ledger.mark_done(command.command_id, stream=STREAM)


@pytest.fixture
async def api(redis_server: RedisServer, known_motors: None) -> AsyncIterator[Api]:
    settings = make_settings(redis_server.url)
    app = create_app(settings)
    async with (
        serve(app, **websocket_options(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield Api(url, client, app)


@pytest.fixture
async def viewer(api: Api) -> AsyncIterator[Viewer]:
    seen = await Viewer.open(api.viewer_url())
    await seen.wait_for("state")
    yield seen
    await seen.close()


@pytest.fixture
async def ledger(redis_server: RedisServer) -> AsyncIterator[Ledger]:
    """The command ledger the API under test uses, as the worker sees it."""
    raw = Redis.from_url(redis_server.url)
    yield Ledger(raw, streams=event_streams(1), ttl_s=3600)
    await raw.aclose()


async def new_command(ledger: Ledger, event_id: str, rounds: int, device: str = "motor_01") -> Command:
    """A command as the worker creates it for one gift (state queued)."""
    (command,) = (await ledger.assign(STREAM, device, {event_id: rounds}, cap=100, deadline_ms=0)).commands
    return command
