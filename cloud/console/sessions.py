"""Operator sessions, held in Redis so that any API process knows them; each expires on its own.

The cookie carries a random session id; Redis holds only its SHA-256, so a read of Redis (a
backup, a MONITOR) gives nobody a usable cookie. Each session has its own CSRF token, which every
state-changing request must echo in a header.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis, RedisCluster

_PREFIX = "giftwheel:console:session:"


@dataclass(frozen=True, slots=True)
class Session:
    operator: str
    csrf: str
    created_ms: int

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode(), self.csrf.encode())


def _key(session_id: str) -> str:
    return _PREFIX + hashlib.sha256(session_id.encode()).hexdigest()


class Sessions:
    def __init__(self, redis: Redis | RedisCluster, ttl_s: int) -> None:
        self._redis = redis
        self.ttl_s = ttl_s

    async def open(self, operator: str, now_ms: int) -> tuple[str, Session]:
        """A new session: its id (for the cookie) and the session (its CSRF token)."""
        session_id = secrets.token_urlsafe(32)
        session = Session(operator=operator, csrf=secrets.token_urlsafe(32), created_ms=now_ms)
        record = {"operator": operator, "csrf": session.csrf, "createdMs": now_ms}
        await self._redis.set(_key(session_id), orjson.dumps(record), ex=self.ttl_s)
        return session_id, session

    async def find(self, session_id: str | None) -> Session | None:
        """The live session of that id, or None (unknown, expired or logged out)."""
        if not session_id or len(session_id) > 128:
            return None
        raw = await self._redis.get(_key(session_id))
        if raw is None:
            return None
        record = orjson.loads(raw)
        return Session(operator=record["operator"], csrf=record["csrf"], created_ms=record["createdMs"])

    async def close(self, session_id: str) -> None:
        await self._redis.delete(_key(session_id))
