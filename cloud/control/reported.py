"""What each motor last reported: its telemetry merged in ts order (cloud/realtime/live_state.py
writes it), read by the workers, who keep the motors to the cloud's holds, and the fleet status."""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis, RedisCluster

from cloud.redis_text import as_text

# Hash: device -> its state JSON (the Telemetry keys it last reported, and their ts).
DEVICES_KEY = "giftwheel:rt:devices"


async def reported_states(redis: Redis | RedisCluster) -> dict[str, dict[str, Any]]:
    raw = await redis.hgetall(DEVICES_KEY)
    return {as_text(k): orjson.loads(v) for k, v in raw.items()}
