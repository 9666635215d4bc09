"""Worker test helpers: gift events, stream entries and settings for a Redis on a free port."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis

from cloud.settings import CloudSettings
from giftwheel.contracts import EVENT_FIELD, GiftEvent

_seq = itertools.count(1)


def gift(**fields: Any) -> GiftEvent:
    n = next(_seq)
    values: dict[str, Any] = {
        "event_id": f"test:{n}",
        "platform": "tiktok",
        "user_id": f"user_{n}",
        "gift_name": "Rose",
        "diamond": 1,
        "quantity": 1,
        "timestamp": int(time.time() * 1000),
    }
    values.update(fields)
    return GiftEvent(**values)


async def enqueue(redis: Redis, stream: str, events: list[GiftEvent]) -> list[str]:
    ids = []
    for event in events:
        ids.append(await redis.xadd(stream, {EVENT_FIELD: event.to_json()}))
    return ids


def cloud_settings(redis_url: str, **worker: Any) -> CloudSettings:
    return CloudSettings.model_validate({"mode": "development", "redis_url": redis_url, "worker": worker})


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it holds; fail the test (naming ``what``) after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        await asyncio.sleep(0.01)
