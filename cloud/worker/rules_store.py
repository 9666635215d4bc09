"""Rules uploaded by an operator (the console, ``giftwheel ctl``), held in Redis for every worker.

While the document is present it takes precedence over each worker's rules file; workers pick it
up on their rules poll. Only rules that validate are ever stored: a bad upload is refused with the
reason and the rules in force stay.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis, RedisCluster

from cloud.redis_text import as_text
from cloud.worker.rules import Rules, parse_rules_yaml

RULES_DOC_KEY = "giftwheel:rules"
RULES_SOURCE = f"redis:{RULES_DOC_KEY}"


@dataclass(frozen=True, slots=True)
class RulesDocument:
    yaml: str
    by: str
    at_ms: int
    # Bumped by every upload, so a worker reparses only when it changed.
    version: int


class RulesStore:
    def __init__(self, redis: Redis | RedisCluster) -> None:
        self._redis = redis

    async def read(self) -> RulesDocument | None:
        raw = await self._redis.hgetall(RULES_DOC_KEY)
        if not raw:
            return None
        f = {as_text(k): as_text(v) for k, v in raw.items()}
        return RulesDocument(
            yaml=f["yaml"], by=f.get("by", ""), at_ms=int(f.get("atMs", "0")), version=int(f["version"])
        )

    async def version(self) -> int | None:
        raw = await self._redis.hget(RULES_DOC_KEY, "version")
        return None if raw is None else int(raw)

    async def upload(self, text: str, by: str, at_ms: int) -> tuple[Rules, int]:
        """Validate, then store: the rules and their new version. RulesError: nothing stored."""
        rules = parse_rules_yaml(text, RULES_SOURCE)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(RULES_DOC_KEY, mapping={"yaml": text, "by": by, "atMs": str(at_ms)})
            pipe.hincrby(RULES_DOC_KEY, "version", 1)
            replies = await pipe.execute()
        return rules, int(replies[1])
