"""The generic source: gift-contract JSON lines -> the real ingest API -> Redis, exact counts."""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time

import orjson
import pytest
from redis.asyncio import Redis

from cloud.api.app import create_app
from cloud.settings import CloudSettings
from cloud.sources.jsonl import JsonLinesSource
from devstack.asgi_server import serve
from devstack.redis_server import RedisServer
from giftwheel.contracts import EVENTS_STREAM
from tests.sources.conftest import API_KEY, Rig
from tests.sources.replay import FIXTURES


async def test_every_good_line_is_stored_once_and_every_bad_one_counted(rig: Rig) -> None:
    text = (FIXTURES / "generic_evening.jsonl").read_text(encoding="utf-8")
    source = JsonLinesSource(
        io.StringIO(text), ingest=rig.ingest, bounds=rig.settings.bounds, clock=rig.clock, metrics=rig.metrics
    )
    await source.run()
    await rig.settle()
    events = await rig.stored()
    assert sorted((e["userId"], e["giftName"], e["quantity"]) for e in events) == [
        ("u9", "Bits", 1),
        ("user_123", "Motor", 1),
        ("user_124", "Rose", 5),
        ("user_129", "Universe", 2),
    ]
    # Lines without an eventId get one derived from the payload: the repeated line dedupes too.
    assert next(e["eventId"] for e in events if e["userId"] == "user_124").startswith("tiktok:h:")
    # A follow, a worthless gift, an unknown field, a number as text, and not JSON at all.
    assert rig.metric("giftwheel_source_parse_failures_total", stage="adapter") == 5


@pytest.mark.slow
async def test_the_cli_sends_a_file_and_exits_once_all_is_acked(
    redis_server: RedisServer, redis: Redis
) -> None:
    now = int(time.time() * 1000)
    lines = [
        orjson.dumps(
            {
                "event": "gift",
                "platform": "tiktok",
                "userId": f"u{n}",
                "giftName": "Rose",
                "diamond": 1,
                "quantity": 1 + n % 4,
                "timestamp": now + n,
            }
        ).decode()
        for n in range(500)
    ]
    api_settings = CloudSettings(redis_url=redis_server.url, api_keys=API_KEY)
    async with serve(create_app(api_settings)) as url:
        env = {
            **os.environ,
            "GIFTWHEEL_API_URL": url,
            "GIFTWHEEL_API_KEY": API_KEY,
            "GIFTWHEEL_LOG_LEVEL": "WARNING",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "giftwheel.cli", "source", "jsonl", "-", env=env, stdin=subprocess.PIPE
        )
        try:
            await proc.communicate(("\n".join(lines) + "\n").encode())
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode == 0
    assert await redis.xlen(EVENTS_STREAM) == 500
