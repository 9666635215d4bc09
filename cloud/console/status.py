"""The fleet as an operator sees it: each motor's live report and hold, the backlog, the DLQ.

The fields are named as the fuller fleet status read model names them, so the page and ``ctl`` read
either.
"""

from __future__ import annotations

from typing import Any

import orjson
from redis.asyncio import Redis, RedisCluster

from cloud.control.holds import Holds
from cloud.ingest.queue import GiftQueue
from cloud.realtime.live_state import DEVICES_KEY
from cloud.worker.dlq import DeadLetters
from giftwheel.clock import Clock
from giftwheel.contracts.control import ALL_MOTORS

# A motor is shown offline once its last report is older than this (the edge's heartbeat is 60 s).
OFFLINE_AFTER_MS = 150_000


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class FleetStatus:
    def __init__(self, redis: Redis | RedisCluster, queue: GiftQueue, clock: Clock) -> None:
        self._redis = redis
        self._queue = queue
        self._holds = Holds(redis)
        self._dlq = DeadLetters(redis)
        self._clock = clock

    async def read(self) -> dict[str, Any]:
        now_ms = self._clock.wall_ms()
        live = {_s(k): orjson.loads(v) for k, v in (await self._redis.hgetall(DEVICES_KEY)).items()}
        holds = (await self._holds.read()).records
        motors = []
        for name in sorted({*live, *(d for d in holds if d != ALL_MOTORS)}):
            report = live.get(name, {})
            record = holds.get(name) or holds.get(ALL_MOTORS)
            seen = report.get("ts")
            command_id = report.get("commandId")
            motors.append(
                {
                    "device": name,
                    "online": isinstance(seen, int) and now_ms - seen <= OFFLINE_AFTER_MS,
                    "lastSeenMs": seen,
                    "state": report.get("state"),
                    "estop": report.get("estop"),
                    "current": None
                    if command_id is None
                    else {
                        "commandId": command_id,
                        "rounds": report.get("commandRounds"),
                        "roundsDone": report.get("commandRoundsDone"),
                    },
                    "queuedRounds": report.get("queuedRounds"),
                    "hold": record.model_dump(by_alias=True) if record else None,
                }
            )
        every = holds.get(ALL_MOTORS)
        return {
            "atMs": now_ms,
            "motors": motors,
            "allHeld": every.model_dump(by_alias=True) if every else None,
            "backlog": await self._queue.backlog(),
            "dlqSize": await self._dlq.size(),
        }
