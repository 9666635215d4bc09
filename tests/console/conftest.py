"""One real `giftwheel api` process and its real Redis per module, with a console operator."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx
import orjson
import pytest
from redis.asyncio import Redis

from cloud.api.settings import RealtimeSettings
from cloud.console.passwords import hash_password
from cloud.control.holds import Holds
from cloud.ledger import Ledger
from cloud.realtime.live_state import LiveState
from devstack.api_process import ApiProcess
from devstack.redis_server import RedisServer
from giftwheel.contracts import EVENTS_STREAM
from giftwheel.contracts.control import AUDIT_STREAM, HoldRecord
from tests.ingest.conftest import API_KEY
from tests.overlay.conftest import browser, chromium

__all__ = ["browser", "chromium"]  # the overlay tests' real Chromium, used here too

OPERATOR, PASSWORD = "night-ops", "correct horse battery staple"
LOGIN_FAILURES_MAX = 3
SESSION_TTL_S = 600
# Shorter than the default 150 s, so the status test can tell the setting reaches the reader.
OFFLINE_AFTER_S = 30


@pytest.fixture(scope="module")
def module_redis() -> Iterator[RedisServer]:
    with RedisServer() as server:
        yield server


@pytest.fixture(scope="module")
def console_api(module_redis: RedisServer) -> Iterator[ApiProcess]:
    env = {
        "GIFTWHEEL_REDIS_URL": module_redis.url,
        "GIFTWHEEL_API_KEYS": API_KEY,
        "GIFTWHEEL_CONSOLE__OPERATORS": orjson.dumps({OPERATOR: hash_password(PASSWORD)}).decode(),
        "GIFTWHEEL_CONSOLE__LOGIN_FAILURES_MAX": str(LOGIN_FAILURES_MAX),
        "GIFTWHEEL_CONSOLE__SESSION_TTL_S": str(SESSION_TTL_S),
        "GIFTWHEEL_CONSOLE__STATUS__OFFLINE_AFTER_S": str(OFFLINE_AFTER_S),
        # No worker runs here: a control request is queued and reported not confirmed after 1 s.
        "GIFTWHEEL_CONTROL_CONFIRM_TIMEOUT_S": "1",
    }
    with ApiProcess(env) as api:
        yield api


@pytest.fixture
async def cloud(module_redis: RedisServer) -> AsyncIterator[Redis]:
    """The API's Redis, emptied before each test (the API's own keys are recreated on use)."""
    redis = Redis.from_url(module_redis.url, decode_responses=True)
    await redis.flushall()
    yield redis
    await redis.aclose()


@pytest.fixture
async def anonymous(console_api: ApiProcess, cloud: Redis) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=console_api.url, timeout=10) as client:
        yield client


class Operator:
    """A logged-in client: its cookie jar holds the session, ``csrf`` the token to echo."""

    def __init__(self, client: httpx.AsyncClient, csrf: str) -> None:
        self.client = client
        self.csrf = csrf

    async def post(self, path: str, body: object = None, **headers: str) -> httpx.Response:
        return await self.client.post(
            f"/v1/console/{path}", json=body, headers={"X-CSRF-Token": self.csrf, **headers}
        )

    async def get(self, path: str) -> httpx.Response:
        return await self.client.get(f"/v1/console/{path}")

    @property
    def session_key(self) -> str:
        session_id = self.client.cookies["giftwheel_console"]
        return "giftwheel:console:session:" + hashlib.sha256(session_id.encode()).hexdigest()


async def log_in(client: httpx.AsyncClient, user: str = OPERATOR, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/v1/console/login", json={"user": user, "password": password})


@pytest.fixture
async def operator(anonymous: httpx.AsyncClient) -> Operator:
    answer = await log_in(anonymous)
    assert answer.status_code == 200, answer.text
    return Operator(anonymous, answer.json()["csrf"])


async def entries(cloud: Redis, stream: str) -> list[dict[str, str]]:
    """A stream's entries' fields, oldest first."""
    return [
        {str(k): str(v) for k, v in (fields or {}).items()} for _, fields in await cloud.xrange(stream) or []
    ]


async def audit(cloud: Redis) -> list[dict[str, str]]:
    return await entries(cloud, AUDIT_STREAM)


@dataclass(frozen=True)
class Fleet:
    done_command: str
    done_at_ms: int


async def two_motors(cloud: Redis, now_ms: int) -> Fleet:
    """wheel-1: online and idle, a command of 4 rounds done 2 minutes ago, one of 2 rounds failed.
    wheel-2: held by "ops" ("jam") with a held command of 5 rounds, silent for longer than
    OFFLINE_AFTER_S (but not the default 150 s, so an offline wheel-2 shows the setting in force)."""
    ledger = Ledger(cloud, streams=[EVENTS_STREAM], ttl_s=3_600)
    live = LiveState(cloud, RealtimeSettings())
    [done] = (await ledger.assign(EVENTS_STREAM, "wheel-1", {"e1": 4}, cap=100, deadline_ms=now_ms)).commands
    await ledger.mark_done(done.command_id)
    [lost] = (await ledger.assign(EVENTS_STREAM, "wheel-1", {"e2": 2}, cap=100, deadline_ms=now_ms)).commands
    await ledger.mark_failed(EVENTS_STREAM, lost.command_id, "edge unreachable")
    await live.merge("wheel-1", {"state": "idle", "queuedRounds": 0}, now_ms - 1_000, latest_ms=now_ms)
    done_at_ms = now_ms - 120_000
    await live.remember_done("wheel-1", {"commandId": done.command_id, "ts": done_at_ms})
    await Holds(cloud).place("wheel-2", HoldRecord(by="ops", reason="jam", at_ms=now_ms))
    await ledger.assign(EVENTS_STREAM, "wheel-2", {"e3": 5}, cap=100, deadline_ms=now_ms, held=True)
    silent_ms = now_ms - (OFFLINE_AFTER_S + 10) * 1_000
    await live.merge("wheel-2", {"state": "held"}, silent_ms, latest_ms=now_ms)
    return Fleet(done.command_id, done_at_ms)
