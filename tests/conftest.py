"""Shared fixtures: real servers on free ports, torn down after each test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from redis.asyncio import Redis

from devstack.redis_server import RedisServer


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A fresh redis-server per test (milliseconds to start; no state leaks between tests)."""
    with RedisServer() as server:
        yield server
        # Its data is thrown away (no snapshot, no AOF), so nothing to flush: kill -9 rather than
        # SIGTERM, which Redis acts on only at its next cron tick (up to 100 ms at the default hz 10).
        server.kill()


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, decode_responses=True)
    yield client
    await client.aclose()
