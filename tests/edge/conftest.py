"""Edge fixtures: a sync Redis client (the edge is threaded, like the gateway that hosts it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis as redis_lib

from devstack.redis_server import RedisServer
from edge.buffer.ledger import CommandLedger
from edge.buffer.outbox import Outbox


@pytest.fixture
def sync_redis(redis_server: RedisServer) -> Iterator[redis_lib.Redis]:
    client = redis_lib.Redis.from_url(redis_server.url, decode_responses=True, socket_timeout=2)
    yield client
    client.close()


@pytest.fixture
def ledger(sync_redis: redis_lib.Redis) -> CommandLedger:
    return CommandLedger(sync_redis, dedupe_ttl_s=3600, max_queued_rounds=1000)


@pytest.fixture
def outbox(sync_redis: redis_lib.Redis) -> Outbox:
    return Outbox(sync_redis)
