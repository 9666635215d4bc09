"""The edge follows the cloud's holds: a motor that reports otherwise is sent hold or resume.

The cloud's holds (HOLDS_KEY) are the desired state. A motor that missed its hold (its Pi was
offline when the hold was sent, or its local Redis was lost) reports running or idle while the cloud
holds it: it is sent ``hold``. A motor the cloud does not hold that reports ``held`` (a resume it
missed) is sent ``resume``. A motor stopped by its e-stop button is left alone: only the button
releases it. Motors are judged on their last telemetry, and only while it is recent.

One worker at a time does this (a short Redis lease), only while its dispatcher is connected. A
mismatch must persist for ``settle_s`` before it is acted on, so the RPCs of a control request in
progress (the executor sends them right after changing the holds) are not raced; a motor is sent
at most one RPC per ``min_interval_s`` (the edge's hold and resume are idempotent anyway).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any

import structlog
from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from cloud.control.holds import HeldMotors, Holds
from cloud.control.reported import reported_states
from cloud.redis_text import as_text
from cloud.worker.dispatcher import Dispatcher, DispatchUnavailable
from cloud.worker.metrics import WorkerMetrics
from cloud.worker.settings import ReconcileSettings
from giftwheel.clock import Clock, SystemClock
from giftwheel.contracts.motor import MotorState, RpcMethod
from giftwheel.lua import lua_source

log = structlog.get_logger(__name__)

LEASE_KEY = "giftwheel:reconcile:lease"
_RENEW = lua_source("cloud.worker", "lease_renew.lua")


def sent_key(device: str) -> str:
    """Set (with a TTL of min_interval_s) when a reconcile RPC went to the device: any worker skips it."""
    return f"giftwheel:reconcile:sent:{device}"


@dataclass(frozen=True, slots=True)
class Mismatch:
    device: str
    method: RpcMethod  # what brings the motor to the cloud's state


def mismatches(
    live: dict[str, dict[str, Any]], holds: HeldMotors, *, now_ms: int, fresh_within_ms: int
) -> list[Mismatch]:
    """The motors whose last report (recent enough) disagrees with the cloud's holds."""
    found = []
    for device, state in sorted(live.items()):
        ts = state.get("ts")
        if not isinstance(ts, int) or now_ms - ts > fresh_within_ms:
            continue  # offline: its reconnect reports its state, judged then
        reported = state.get("state")
        if holds.covers(device) and reported in (MotorState.RUNNING, MotorState.IDLE):
            found.append(Mismatch(device, RpcMethod.HOLD))
        elif not holds.covers(device) and reported == MotorState.HELD:
            found.append(Mismatch(device, RpcMethod.RESUME))
    return found


class EdgeReconciler:
    def __init__(
        self,
        redis: Redis | RedisCluster,
        dispatcher: Dispatcher,
        holds: Holds,
        settings: ReconcileSettings,
        metrics: WorkerMetrics,
        *,
        worker_id: str,
        rpc_wait_s: float,
        clock: Clock | None = None,
    ) -> None:
        self._redis = redis
        self._dispatcher = dispatcher
        self._holds = holds
        self._settings = settings
        self._metrics = metrics
        self._worker_id = worker_id
        self._rpc_wait_s = rpc_wait_s
        self._clock = clock or SystemClock()
        self._renew = redis.register_script(_RENEW)
        # (device, method) -> when this worker first saw that mismatch (monotonic s)
        self._seen: dict[tuple[str, RpcMethod], float] = {}
        self._inflight: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.tick()
                except (RedisError, OSError) as exc:
                    log.warning("reconcile_unavailable", error=str(exc))
                await asyncio.sleep(self._settings.interval_s)
        finally:
            for task in self._inflight:
                task.cancel()
            await asyncio.gather(*self._inflight, return_exceptions=True)
            with contextlib.suppress(RedisError, OSError):
                await self._release()

    async def tick(self) -> list[Mismatch]:
        """One pass; returns the mismatches acted on (an RPC started for each)."""
        if not self._dispatcher.is_ready or not await self._lease():
            self._seen.clear()
            return []
        live = await reported_states(self._redis)
        holds = await self._holds.read()
        now = self._clock.monotonic()
        current = mismatches(
            live,
            holds,
            now_ms=self._clock.wall_ms(),
            fresh_within_ms=round(self._settings.fresh_within_s * 1000),
        )
        self._seen = {(m.device, m.method): self._seen.get((m.device, m.method), now) for m in current}
        acted = []
        for mismatch in current:
            if now - self._seen[(mismatch.device, mismatch.method)] < self._settings.settle_s:
                continue
            if any(t.get_name() == mismatch.device for t in self._inflight):
                continue
            if not await self._redis.set(
                sent_key(mismatch.device),
                mismatch.method.value,
                nx=True,
                px=round(self._settings.min_interval_s * 1000),
            ):
                continue
            task = asyncio.create_task(self._send(mismatch), name=mismatch.device)
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            acted.append(mismatch)
        return acted

    async def _send(self, mismatch: Mismatch) -> None:
        try:
            reply = await self._dispatcher.call(mismatch.method, mismatch.device, timeout_s=self._rpc_wait_s)
        except DispatchUnavailable as exc:
            reply = {"error": "NOT_CONNECTED", "detail": str(exc)}
        result = "error" if "error" in reply else "ok"
        self._metrics.reconcile_rpcs.labels(mismatch.method.value, result).inc()
        log.info(
            "reconcile_rpc",
            device=mismatch.device,
            method=mismatch.method.value,
            result=result,
            reply=reply,
        )

    async def _lease(self) -> bool:
        ttl_ms = round(self._settings.lease_s * 1000)
        if int(await self._renew(keys=[LEASE_KEY], args=[self._worker_id, ttl_ms])) == 1:
            return True
        return bool(await self._redis.set(LEASE_KEY, self._worker_id, nx=True, px=ttl_ms))

    async def _release(self) -> None:
        if as_text(await self._redis.get(LEASE_KEY) or "") == self._worker_id:
            await self._redis.delete(LEASE_KEY)
