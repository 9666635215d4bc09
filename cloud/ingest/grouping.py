"""Group commit: concurrent single-event requests share one Redis round trip.

A request hands its event over and awaits its own result. While fewer than ``max_inflight``
writes are under way, a write starts at the end of the current event-loop pass with everything
waiting (requests whose bodies arrived in the same pass go together); otherwise events wait for
the next free slot and go together. Under light load every event travels alone (no added
latency); under heavy load one round trip carries many events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from cloud.ingest.queue import Appended
from giftwheel.contracts import GiftEvent

AppendMany = Callable[[list[GiftEvent]], Awaitable[list[Appended]]]


class WriteGrouper:
    def __init__(self, append_many: AppendMany, *, max_inflight: int, max_group: int) -> None:
        self._append_many = append_many
        self._max_inflight = max_inflight
        self._max_group = max_group
        self._waiting: list[tuple[GiftEvent, asyncio.Future[Appended]]] = []
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduled = False

    async def append(self, event: GiftEvent) -> Appended:
        future: asyncio.Future[Appended] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, future))
        self._schedule()
        return await future

    async def append_all(self, events: list[GiftEvent]) -> list[Appended]:
        futures = []
        loop = asyncio.get_running_loop()
        for event in events:
            future: asyncio.Future[Appended] = loop.create_future()
            self._waiting.append((event, future))
            futures.append(future)
        self._start_writes()
        return list(await asyncio.gather(*futures))

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start_writes)

    def _start_writes(self) -> None:
        self._scheduled = False
        while self._waiting and self._inflight < self._max_inflight:
            group = self._waiting[: self._max_group]
            del self._waiting[: self._max_group]
            self._inflight += 1
            task = asyncio.get_running_loop().create_task(self._write(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _write(self, group: list[tuple[GiftEvent, asyncio.Future[Appended]]]) -> None:
        try:
            results = await self._append_many([event for event, _ in group])
        except Exception as exc:  # handed to every waiter; each request turns it into its answer
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)
        finally:
            self._inflight -= 1
            self._start_writes()

    async def drain(self) -> None:
        """Wait for writes under way (at shutdown, so no accepted request loses its answer)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
