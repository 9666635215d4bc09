"""Which motors are held, and by whom: the HOLDS_KEY hash, read by every worker, written by control."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis, RedisCluster

from cloud.redis_text import as_text
from giftwheel.contracts.control import ALL_MOTORS, HOLDS_KEY, HoldRecord
from giftwheel.lua import lua_source

_LIFT = lua_source("cloud.control", "lift.lua")


@dataclass(frozen=True, slots=True)
class HeldMotors:
    """A snapshot of the holds: device (or ALL_MOTORS) -> who held it."""

    records: dict[str, HoldRecord]

    def covers(self, device: str) -> bool:
        return ALL_MOTORS in self.records or device in self.records

    def record_for(self, device: str) -> HoldRecord | None:
        return self.records.get(device) or self.records.get(ALL_MOTORS)


class Holds:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self._redis = redis
        self._lift = redis.register_script(_LIFT)

    async def read(self) -> HeldMotors:
        raw = await self._redis.hgetall(HOLDS_KEY)
        return HeldMotors(
            {as_text(device): HoldRecord.model_validate_json(record) for device, record in raw.items()}
        )

    async def place(self, device: str, record: HoldRecord) -> None:
        """Hold a device, or every motor (ALL_MOTORS, motors not known yet included). A hold placed
        again keeps its first record: who held it first, and since when."""
        await self._redis.hsetnx(HOLDS_KEY, device, record.to_json())

    async def lift(self, device: str, *, known: Iterable[str], keep: Iterable[str] = ()) -> None:
        """Lift a device's hold, or every hold (ALL_MOTORS), except the devices in ``keep``.

        A device lifted while every motor is held: the hold of all becomes one hold per ``known``
        device but this one (a motor not known yet is then not held)."""
        await self._lift(
            keys=[HOLDS_KEY], args=[device, orjson.dumps(sorted(known)), orjson.dumps(sorted(keep))]
        )
