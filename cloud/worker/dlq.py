"""The dead-letter stream: entries that could not be handled, with the reason; never dropped.

Each dead letter keeps the source stream, the original entry id, the reason, the delivery count and
the raw fields, so ``replay`` can put the event back on its stream once the cause is fixed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from redis.asyncio import Redis, RedisCluster

from cloud.redis_text import as_text
from giftwheel.contracts import EVENT_FIELD

DLQ_STREAM = "giftwheel:dlq"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    dlq_id: str
    stream: str
    entry_id: str
    reason: str
    deliveries: int
    event: str
    dead_at_ms: int


class DeadLetters:
    def __init__(self, redis: Redis | RedisCluster, stream: str = DLQ_STREAM) -> None:
        self._redis = redis
        self.stream = stream

    async def add(
        self, source: str, entry_id: str, fields: dict[str, str], reason: str, deliveries: int
    ) -> str:
        record = {
            "stream": source,
            "entryId": entry_id,
            "reason": reason,
            "deliveries": str(deliveries),
            "event": fields.get(EVENT_FIELD, ""),
            "deadAt": str(time.time_ns() // 1_000_000),
        }
        return as_text(await self._redis.xadd(self.stream, record))  # type: ignore[arg-type]

    async def size(self) -> int:
        return int(await self._redis.xlen(self.stream))

    async def read(self, count: int = 100, after: str = "-") -> list[DeadLetter]:
        start = after if after == "-" else f"({after}"
        rows = await self._redis.xrange(self.stream, min=start, max="+", count=count)
        letters = []
        for dlq_id, raw in rows or []:
            if raw is None:
                continue
            f = {as_text(k): as_text(v) for k, v in raw.items()}
            letters.append(
                DeadLetter(
                    dlq_id=as_text(dlq_id),
                    stream=f.get("stream", ""),
                    entry_id=f.get("entryId", ""),
                    reason=f.get("reason", ""),
                    deliveries=int(f.get("deliveries", "0")),
                    event=f.get("event", ""),
                    dead_at_ms=int(f.get("deadAt", "0")),
                )
            )
        return letters

    async def replay(self, dlq_ids: list[str]) -> list[tuple[str, str]]:
        """Append each letter's event to its source stream again, then remove the letter.

        The event keeps its eventId, so the worker's ledger still recognises one that a command
        already carries. Returns (dlq id, new entry id) per replayed letter.
        """
        replayed = []
        for dlq_id in dlq_ids:
            rows = await self._redis.xrange(self.stream, min=dlq_id, max=dlq_id)
            if not rows or rows[0][1] is None:
                continue
            fields = {as_text(k): as_text(v) for k, v in rows[0][1].items()}
            new_id = await self._redis.xadd(fields["stream"], {EVENT_FIELD: fields["event"]})
            await self._redis.xdel(self.stream, dlq_id)
            replayed.append((dlq_id, as_text(new_id)))
        return replayed
