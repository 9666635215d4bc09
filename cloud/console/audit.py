"""The audit stream: every console and ctl action, who did it, when, and its result."""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel
from redis.asyncio import Redis, RedisCluster

from cloud.redis_text import as_text
from giftwheel.contracts.control import AUDIT_STREAM


class AuditEntry(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    id: str = ""
    at_ms: int
    who: str  # the operator, or the name tried at a failed login
    action: str  # login, logout, control.hold, test-gift, dlq.replay, rules.upload, ...
    result: str  # ok, refused, failed, unconfirmed
    # Where from (the client's address) and what exactly: the target, the reason, the outcome.
    client: str = ""
    detail: dict[str, Any] = {}


class AuditLog:
    def __init__(self, redis: Redis | RedisCluster, max_entries: int, stream: str = AUDIT_STREAM) -> None:
        self._redis = redis
        self._max_entries = max_entries
        self.stream = stream

    async def write(self, entry: AuditEntry) -> str:
        fields = {
            "atMs": str(entry.at_ms),
            "who": entry.who,
            "action": entry.action,
            "result": entry.result,
            "client": entry.client,
            "detail": orjson.dumps(entry.detail).decode(),
        }
        entry_id = await self._redis.xadd(
            self.stream,
            fields,  # type: ignore[arg-type]
            maxlen=self._max_entries,
            approximate=True,
        )
        return as_text(entry_id)

    async def newest(self, count: int) -> list[AuditEntry]:
        """The newest ``count`` entries, newest first."""
        rows = await self._redis.xrevrange(self.stream, count=count)
        entries = []
        for entry_id, raw in rows or []:
            if raw is None:  # an entry trimmed while being read
                continue
            f = {as_text(k): as_text(v) for k, v in raw.items()}
            entries.append(
                AuditEntry(
                    id=as_text(entry_id),
                    at_ms=int(f.get("atMs", "0")),
                    who=f.get("who", ""),
                    action=f.get("action", ""),
                    result=f.get("result", ""),
                    client=f.get("client", ""),
                    detail=orjson.loads(f.get("detail", "{}")),
                )
            )
        return entries
