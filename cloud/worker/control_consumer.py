"""Every worker's reader of the control stream, beside its shard consumers: never behind the gift backlog.

A request is acknowledged only after it was carried out and its outcome stored (``done`` marker) and
handed to the API (its result key). A request delivered again (this worker crashed before its ack)
whose marker exists is acknowledged without being carried out twice; one that a dead worker left
pending is claimed (XAUTOCLAIM) once it has been idle ``claim_idle_ms``, and carried out again,
which its steps allow (cloud/worker/control_executor.py).

An entry that is no valid request can never be carried out: it is acknowledged, and where it names a
request id its caller gets a refusal at once instead of waiting out its confirm timeout. Entries
acknowledged longer than retention_s ago are trimmed from the stream; the rest never are.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError, ResponseError

from cloud.redis_text import as_text
from cloud.stream_trim import trim_acknowledged
from cloud.worker.control_executor import ControlExecutor
from cloud.worker.metrics import WorkerMetrics
from cloud.worker.settings import ControlSettings
from giftwheel.clock import Clock, SystemClock
from giftwheel.contracts.control import (
    CONTROL_FIELD,
    CONTROL_GROUP,
    CONTROL_STREAM,
    ControlOutcome,
    ControlRequest,
    RequestId,
    control_result_key,
)
from giftwheel.lua import lua_source

log = structlog.get_logger(__name__)

# The shard consumers' script, on the control group.
_FORGET_IDLE_CONSUMERS = lua_source("cloud.worker", "forget_idle_consumers.lua")
# A pause after Redis failed, before reading again.
_RETRY_PAUSE_S = 0.5
# What an invalid request's refusal and log line say of its faults, at most.
_FAULTS_MAX_CHARS = 500


def done_key(request_id: str) -> str:
    """The outcome of a request carried out, kept result_ttl_s: a redelivery is acked, not redone."""
    return f"{CONTROL_STREAM}:done:{request_id}"


class ControlConsumer:
    def __init__(
        self,
        redis: Redis | RedisCluster,
        executor: ControlExecutor,
        settings: ControlSettings,
        metrics: WorkerMetrics,
        *,
        consumer: str,
        clock: Clock | None = None,
    ) -> None:
        self._redis = redis
        self._metrics = metrics
        self._executor = executor
        self._settings = settings
        self._consumer = consumer
        self._clock = clock or SystemClock()
        self._forget_idle = redis.register_script(_FORGET_IDLE_CONSUMERS)
        self._next_forget = 0.0
        self._next_trim = 0.0

    async def run(self) -> None:
        await self._ensure_group()
        while True:
            try:
                claimed = await self._claim()
                if claimed:
                    await self._process(claimed)
                    continue
                await self._forget_idle_consumers()
                await self._trim()
                rows: Any = await self._redis.xreadgroup(
                    CONTROL_GROUP,
                    self._consumer,
                    {CONTROL_STREAM: ">"},
                    count=1,
                    block=self._settings.read_block_ms,
                )
                for _stream, entries in rows or []:
                    await self._process(entries)
            except (RedisError, OSError) as exc:
                log.warning("control_redis_unavailable", error=str(exc))
                await asyncio.sleep(_RETRY_PAUSE_S)
            except Exception:  # a bug must not end this worker's control reader: the request stays
                # pending, to be claimed again after claim_idle_ms, and the failure is loud each time
                log.exception("control_request_failed")
                self._metrics.control_requests.labels("unknown", "error").inc()
                await asyncio.sleep(_RETRY_PAUSE_S)

    async def _ensure_group(self) -> None:
        try:
            await self._redis.xgroup_create(CONTROL_STREAM, CONTROL_GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def _forget_idle_consumers(self) -> None:
        """Each worker reads under its own name: drop the idle, empty names restarts leave behind."""
        now = self._clock.monotonic()
        if now < self._next_forget:
            return
        self._next_forget = now + self._settings.claim_idle_ms / 1000
        await self._forget_idle(
            keys=[CONTROL_STREAM], args=[CONTROL_GROUP, self._consumer, 10 * self._settings.claim_idle_ms]
        )

    async def _trim(self) -> None:
        """Every worker, every trim_interval_s: the requests acknowledged more than retention_s ago."""
        now = self._clock.monotonic()
        if now < self._next_trim:
            return
        self._next_trim = now + self._settings.trim_interval_s
        before_ms = self._clock.wall_ms() - int(self._settings.retention_s * 1000)
        await trim_acknowledged(self._redis, CONTROL_STREAM, CONTROL_GROUP, before_ms=before_ms)

    async def _claim(self) -> list[Any]:
        """Requests another worker took and did not finish within claim_idle_ms (it died)."""
        reply = await self._redis.xautoclaim(
            CONTROL_STREAM, CONTROL_GROUP, self._consumer, self._settings.claim_idle_ms, "0-0", count=1
        )
        return list(reply[1])

    async def _process(self, entries: list[Any]) -> None:
        for entry_id, fields in entries:
            await self._handle(as_text(entry_id), {as_text(k): as_text(v) for k, v in (fields or {}).items()})
            await self._redis.xack(CONTROL_STREAM, CONTROL_GROUP, entry_id)

    async def _handle(self, entry_id: str, fields: dict[str, str]) -> None:
        raw = fields.get(CONTROL_FIELD, "")
        try:
            request = ControlRequest.model_validate_json(raw)
        except ValidationError as exc:
            await self._refuse_invalid(entry_id, raw, exc)
            return
        if await self._redis.exists(done_key(request.request_id)):
            log.info("control_request_already_done", request_id=request.request_id)
            return
        done = await self._executor.execute(request)
        result = "refused" if done.refused else ("ok" if done.ok else "partial")
        self._metrics.control_requests.labels(request.action.value, result).inc()
        await self._answer(request.request_id, done)

    async def _refuse_invalid(self, entry_id: str, raw: str, exc: ValidationError) -> None:
        """An entry no worker can carry out (dropped, said loudly); its caller, where the entry
        names a request id, is told so at once."""
        faults = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'request'}: {error['msg']}"
            for error in exc.errors(include_url=False)
        )[:_FAULTS_MAX_CHARS]
        log.error("control_request_invalid", entry_id=entry_id, error=faults)
        self._metrics.control_requests.labels("unknown", "invalid").inc()
        try:
            request_id = _Addressed.model_validate_json(raw).request_id
        except ValidationError:
            return  # nobody to answer
        if await self._redis.exists(done_key(request_id)):
            return
        refusal = ControlOutcome(
            request_id=request_id,
            action=None,
            device=None,
            ok=False,
            done_at_ms=self._clock.wall_ms(),
            refused=f"invalid control request, not carried out: {faults}",
        )
        await self._answer(request_id, refusal)

    async def _answer(self, request_id: str, outcome: ControlOutcome) -> None:
        """Store the outcome (a redelivery is then acknowledged, not redone) and hand it to the caller."""
        text = outcome.to_json()
        ttl_s = self._settings.result_ttl_s
        result_key = control_result_key(request_id)
        await self._redis.set(done_key(request_id), text, ex=ttl_s)
        await self._redis.lpush(result_key, text)
        await self._redis.expire(result_key, ttl_s)


class _Addressed(BaseModel):
    """What an invalid request may still tell: the request id its caller waits on."""

    model_config = ConfigDict(alias_generator=to_camel, extra="ignore")

    request_id: RequestId
