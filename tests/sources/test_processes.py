"""Real processes: `giftwheel source tikfinity` feeding `giftwheel api`, which is killed -9 mid-stream."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis
from websockets.asyncio.server import ServerConnection, serve

from devstack.ports import free_port, wait_for_port
from devstack.redis_server import RedisServer
from giftwheel.contracts import EVENTS_STREAM

API_KEY = "process-test-key-0123456789"
STREAMER = "wheel_host"


def _gift(user: int, gift: tuple[int, str, int, int], msg: int, count: int, end: bool, group: int) -> str:
    gift_id, name, gift_type, diamonds = gift
    now = int(time.time() * 1000)
    data = {
        "giftId": gift_id,
        "giftName": name,
        "giftType": gift_type,
        "diamondCount": diamonds,
        "repeatCount": count,
        "repeatEnd": end,
        "groupId": str(group),
        "userId": str(6_900_000_000 + user),
        "uniqueId": f"viewer{user}",
        "msgId": str(7_301_000_000 + msg),
        "createTime": str(now),
        "timestamp": now,
    }
    return orjson.dumps({"event": "gift", "data": data}).decode()


def recorded_evening(viewers: int) -> tuple[list[str], dict[str, int]]:
    """Frames of an evening: each viewer a Galaxy and a Rose streak (every 5th streak loses its end).

    Returns the frames and, per eventId, the quantity that must end up in the stream.
    """
    rose, galaxy = (5655, "Rose", 1, 1), (11046, "Galaxy", 2, 1000)
    streams: list[list[str]] = []
    expected: dict[str, int] = {}
    msg = 0
    for user in range(viewers):
        frames = []
        msg += 1
        frames.append(_gift(user, galaxy, msg, 1, False, 0))
        expected[f"tiktok:{6_900_000_000 + user}:11046:m{7_301_000_000 + msg}"] = 1
        length, group = 1 + user % 13, 1_700_000_000_000 + user
        for n in range(1, length + 1):
            msg += 1
            frames.append(_gift(user, rose, msg, n, False, group))
        if user % 5:
            msg += 1
            frames.append(_gift(user, rose, msg, length, True, group))
        expected[f"tiktok:{6_900_000_000 + user}:5655:g{group}"] = length
        streams.append(frames)
    # Viewers send at the same time: interleave their frames.
    interleaved = [f for i in range(max(map(len, streams))) for s in streams if i < len(s) for f in [s[i]]]
    return interleaved, expected


@contextmanager
def process(args: list[str], env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen([sys.executable, "-m", "giftwheel.cli", *args], env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


async def _stored(redis: Redis) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for _, fields in await redis.xrange(EVENTS_STREAM) or []:
        assert fields is not None
        events.append(orjson.loads(fields["event"]))
    return events


async def _until_stored(redis: Redis, count: int, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while await redis.xlen(EVENTS_STREAM) < count:  # noqa: ASYNC110 (nothing to await in Redis)
            await asyncio.sleep(0.05)


@pytest.mark.slow
async def test_kill_9_of_the_api_mid_stream_loses_nothing_and_counts_nothing_twice(
    redis_server: RedisServer, redis: Redis
) -> None:
    api_port, feed_port = free_port(), free_port()
    # Each its own environment: both refuse a GIFTWHEEL_ variable that is not one of their settings.
    api_env = {
        **os.environ,
        "GIFTWHEEL_REDIS_URL": redis_server.url,
        "GIFTWHEEL_API_KEYS": API_KEY,
        "GIFTWHEEL_LOG_LEVEL": "WARNING",
    }
    source_env = {
        **os.environ,
        "GIFTWHEEL_API_URL": f"http://127.0.0.1:{api_port}",
        "GIFTWHEEL_API_KEY": API_KEY,
        "GIFTWHEEL_STREAKS__TIMEOUT_S": "1",
        "GIFTWHEEL_STREAKS__SWEEP_INTERVAL_S": "0.1",
        "GIFTWHEEL_INGEST_CLIENT__BACKOFF__INITIAL_S": "0.05",
        "GIFTWHEEL_INGEST_CLIENT__BACKOFF__MAX_S": "0.3",
        "GIFTWHEEL_LOG_LEVEL": "WARNING",
    }
    frames, expected = recorded_evening(viewers=60)
    half = len(frames) // 2
    resume = asyncio.Event()

    async def tikfinity(ws: ServerConnection) -> None:
        for index, frame in enumerate(frames):
            if index == half:
                await resume.wait()
            await ws.send(frame)
            await asyncio.sleep(0.002)
        await ws.wait_closed()

    api_args = ["api", "--host", "127.0.0.1", "--port", str(api_port)]
    source_args = ["source", "tikfinity", "--url", f"ws://127.0.0.1:{feed_port}", "--channel", STREAMER]
    async with serve(tikfinity, "127.0.0.1", feed_port):
        with process(api_args, api_env) as api:
            await asyncio.to_thread(wait_for_port, "127.0.0.1", api_port, 20)
            with process(source_args, source_env) as source:
                await _until_stored(redis, 20, 20)
                api.send_signal(signal.SIGKILL)
                api.wait(10)
                # The second half arrives while the API is dead: the source must hold it.
                resume.set()
                await asyncio.sleep(1.0)
                with process(api_args, api_env):
                    await asyncio.to_thread(wait_for_port, "127.0.0.1", api_port, 20)
                    await _until_stored(redis, len(expected), 30)
                    await asyncio.sleep(1.5)  # room for anything counted twice to show up
                    source.send_signal(signal.SIGTERM)
                    assert await asyncio.to_thread(source.wait, 20) == 0
    events = await _stored(redis)
    assert len(events) == len(expected)
    assert {e["eventId"]: e["quantity"] for e in events} == expected
    assert sum(e["quantity"] for e in events) == sum(expected.values())
    assert {e["channel"] for e in events} == {STREAMER}
