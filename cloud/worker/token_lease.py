"""One worker per dispatcher token: a worker claims its ThingsBoard access token in Redis before use.

ThingsBoard keeps one session per device (ACTORS_MAX_CONCURRENT_SESSION_PER_DEVICE, default 1): a
second MQTT session with the same access token closes the first, which reconnects and closes the
second, and so on; answers go to closed sessions and commands time out. So each worker claims its
token with a lease (a key with a TTL, renewed while the worker runs, deleted when it stops) and a
token another live worker holds is a startup error, not a flapping connection.

A worker is given its own token or a pool; from a pool it claims a free one, so identical workers
(``docker compose --scale worker=N``) each end up with a different token. The key holds a hash of
the token, never the token. A worker that finds its own id on the lease (a restart with the same
``--worker-id``) takes it back at once; otherwise it waits up to ``token_claim_wait_s`` for a lease
a killed worker left to expire.
"""

from __future__ import annotations

import asyncio
import hashlib

import structlog
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from cloud.redis_text import as_text
from cloud.worker.leases import RELEASE_IF_OWNER
from cloud.worker.settings import MqttSettings
from giftwheel.clock import Clock, SystemClock
from giftwheel.lua import lua_source

log = structlog.get_logger(__name__)

_CLAIM = lua_source("cloud.worker", "token_claim.lua")


class TokenUnavailable(Exception):
    """No configured dispatcher token is free: another worker holds it (or every one of the pool)."""


class TokenLost(Exception):
    """The claimed token's lease now names another worker: stop rather than knock it off."""


def token_fingerprint(token: str) -> str:
    """What logs and Redis keys show of a token: a hash that cannot be turned back into it."""
    return hashlib.blake2b(token.encode(), digest_size=8).hexdigest()


def token_lease_key(token: str) -> str:
    return f"giftwheel:dispatcher-token:{token_fingerprint(token)}"


def _preference(worker_id: str, token: str) -> bytes:
    # Rendezvous order: workers that start together try the pool's tokens in different orders.
    return hashlib.blake2b(f"{worker_id}|{token_fingerprint(token)}".encode(), digest_size=8).digest()


class DispatcherToken:
    """Claims one of the configured tokens for ``worker_id``, keeps the claim, releases it."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        worker_id: str,
        settings: MqttSettings,
        *,
        clock: Clock | None = None,
    ) -> None:
        self._redis = redis
        self._clock = clock or SystemClock()
        self._worker_id = worker_id
        self._settings = settings
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(RELEASE_IF_OWNER)
        self.token: str | None = None

    async def _try(self, token: str) -> bool:
        ttl_ms = self._settings.token_lease_ttl_ms
        return bool(await self._claim(keys=[token_lease_key(token)], args=[self._worker_id, ttl_ms]))

    async def acquire(self) -> str:
        """Claim a free token, waiting up to ``token_claim_wait_s``; raise TokenUnavailable if none."""
        tokens = self._settings.tokens()
        if not tokens:
            raise TokenUnavailable(
                "no dispatcher access token configured: set GIFTWHEEL_WORKER__MQTT__ACCESS_TOKEN (this "
                "worker's own dispatcher device) or GIFTWHEEL_WORKER__MQTT__ACCESS_TOKENS (a pool)"
            )
        ranked = sorted(tokens, key=lambda t: _preference(self._worker_id, t))
        deadline = self._clock.monotonic() + self._settings.token_claim_wait_s
        retry_s = self._settings.token_lease_ttl_ms / 3000
        while True:
            for token in ranked:
                if await self._try(token):
                    self.token = token
                    log.info(
                        "dispatcher_token_claimed",
                        worker=self._worker_id,
                        token=token_fingerprint(token),
                        pool=len(tokens),
                    )
                    return token
            if self._clock.monotonic() >= deadline:
                break
            await asyncio.sleep(retry_s)
        holders = [await self._redis.get(token_lease_key(t)) for t in ranked]
        held_by = sorted({as_text(h) for h in holders if h is not None})
        if len(tokens) == 1:
            problem = (
                f"the dispatcher access token ({token_fingerprint(tokens[0])}) is in use by worker "
                f"{', '.join(held_by) or '?'}"
            )
        else:
            problem = (
                f"all {len(tokens)} dispatcher access tokens of the pool are in use (by {', '.join(held_by)})"
            )
        raise TokenUnavailable(
            f"{problem}. ThingsBoard keeps one session per device, so two workers on one token knock "
            "each other off: give each worker its own dispatcher device (giftwheel tb provision "
            "--dispatchers N) and token, or more tokens to the pool"
        )

    async def keep(self) -> None:
        """Renew the claim until cancelled; raise TokenLost once another worker holds the token.

        A renewal Redis cannot answer is retried: while Redis is away no other worker can claim it.
        """
        token = self.token
        assert token is not None, "acquire() first"
        interval_s = self._settings.token_lease_ttl_ms / 3000
        while True:
            await asyncio.sleep(interval_s)
            try:
                kept = await self._try(token)
            except (RedisError, OSError) as exc:
                log.warning("dispatcher_token_renewal_failed", error=str(exc))
                continue
            if not kept:
                holder = await self._redis.get(token_lease_key(token))
                raise TokenLost(
                    f"worker {as_text(holder)} now holds this "
                    f"worker's dispatcher access token ({token_fingerprint(token)}); stopping instead "
                    "of knocking its ThingsBoard session off"
                )

    async def release(self) -> None:
        if self.token is not None:
            await self._release(keys=[token_lease_key(self.token)], args=[self._worker_id])
            self.token = None
