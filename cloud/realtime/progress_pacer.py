"""motor.progress published at most once per interval per API process, the newest per device.

Progress updates supersede each other, so those that arrive within an interval of the last
publish wait, merged to the newest per device, and go out together at its end: one bus message
and, on a plain WebSocket, one frame per viewer, however many motors are turning. An update after a
quiet spell goes out at once. Done events are never held back: a done drops its device's waiting
progress (the done carries the final numbers) and is published at once by the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import structlog
from redis.exceptions import RedisError

from cloud.realtime.events import PublishBatch, ViewerEvent
from giftwheel.clock import Clock, SystemClock

log = structlog.get_logger(__name__)

_PROGRESS = ViewerEvent.MOTOR_PROGRESS.value


class ProgressPacer:
    def __init__(self, publish: PublishBatch, interval_s: float, *, clock: Clock | None = None) -> None:
        self._publish = publish
        self._interval_s = interval_s
        self._clock = clock or SystemClock()
        self._waiting: dict[str, tuple[dict[str, Any], list[str]]] = {}
        self._last = -math.inf
        self._flusher: asyncio.Task[None] | None = None

    async def progress(self, device: str, payload: dict[str, Any], rooms: list[str]) -> None:
        """Publish now if the last publish is an interval old, else hold it for the next one.

        A publish made now raises Redis errors to the caller (the webhook answers 503)."""
        if self._flusher is None and self._clock.monotonic() - self._last >= self._interval_s:
            self._last = self._clock.monotonic()
            await self._publish([(_PROGRESS, payload, rooms)])
            return
        self._waiting[device] = (payload, rooms)
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_later())

    def done(self, device: str) -> None:
        """The device's command finished: its waiting progress is outdated by the done."""
        self._waiting.pop(device, None)

    async def _flush_later(self) -> None:
        waiting: dict[str, tuple[dict[str, Any], list[str]]] = {}
        try:
            await asyncio.sleep(max(0.0, self._last + self._interval_s - self._clock.monotonic()))
            waiting, self._waiting = self._waiting, {}
            if waiting:  # a done may have outdated all of them: then the next update need not wait
                self._last = self._clock.monotonic()
                await self._publish([(_PROGRESS, payload, rooms) for payload, rooms in waiting.values()])
        except (RedisError, OSError) as exc:
            # Superseded by the next update anyway; the live state (what joiners get) has them.
            log.warning("progress updates not published", devices=len(waiting), error=str(exc))
        finally:
            self._flusher = None

    async def stop(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
