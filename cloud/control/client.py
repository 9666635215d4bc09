"""The API side of a control request: queue it for the workers, wait for its outcome a bounded while."""

from __future__ import annotations

import time

from redis.asyncio import Redis, RedisCluster

from cloud.redis_text import as_text
from giftwheel.contracts.control import (
    CONTROL_FIELD,
    CONTROL_STREAM,
    ControlOutcome,
    ControlRequest,
    control_result_key,
)

# One BLPOP waits at most this long, so that it ends before the client's socket timeout (the Redis
# settings' socket_timeout_s, 2 s by default) would cut it; the wait for an outcome is a loop of them.
WAIT_SLICE_S = 1.0
# Redis reads a BLPOP timeout under 1 ms as 0, which blocks for ever: the last slice is never shorter.
_SHORTEST_WAIT_S = 0.01


class ControlNotConfirmed(TimeoutError):
    """No worker reported the outcome in time. The request is durable in the control stream: a
    worker carries it out later (once, by its request id), so the caller must not assume it failed."""

    def __init__(self, request_id: str, timeout_s: float) -> None:
        super().__init__(
            f"control request {request_id} not confirmed within {timeout_s:g} s; "
            "the request stays queued and will be carried out"
        )
        self.request_id = request_id
        self.timeout_s = timeout_s


class ControlClient:
    def __init__(self, redis: Redis | RedisCluster, *, wait_slice_s: float = WAIT_SLICE_S) -> None:
        self._redis = redis
        self._wait_slice_s = wait_slice_s

    async def enqueue(self, request: ControlRequest) -> str:
        """Queue the request; its stream entry id. A request queued twice is carried out once."""
        entry_id = await self._redis.xadd(CONTROL_STREAM, {CONTROL_FIELD: request.to_json()})
        return as_text(entry_id)

    async def wait(self, request_id: str, timeout_s: float) -> ControlOutcome:
        """The request's outcome once a worker reports it; ControlNotConfirmed after timeout_s."""
        deadline = time.monotonic() + timeout_s
        key = control_result_key(request_id)
        while (left := deadline - time.monotonic()) > 0:
            popped = await self._redis.blpop(
                [key], timeout=max(min(left, self._wait_slice_s), _SHORTEST_WAIT_S)
            )
            if popped is not None:
                return ControlOutcome.model_validate_json(popped[1])
        raise ControlNotConfirmed(request_id, timeout_s)

    async def submit(self, request: ControlRequest, timeout_s: float) -> ControlOutcome:
        """Queue the request and wait for its outcome; ControlNotConfirmed after timeout_s."""
        await self.enqueue(request)
        return await self.wait(request.request_id, timeout_s)
