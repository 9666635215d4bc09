"""A viewer's bounded queue: old progress updates are dropped first, gifts and done events never.

No framework imports: the Hub fills it, a per-viewer sender drains it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from cloud.realtime.events import DROPPABLE


@dataclass(slots=True)
class Message:
    """One event for viewers, encoded at most once per transport however many viewers get it."""

    event: str
    data: Any
    droppable: bool = False
    _frame: str | None = field(default=None, repr=False)
    _socketio_packet: str | None = field(default=None, repr=False)

    @classmethod
    def of(cls, event: str, data: Any) -> Message:
        return cls(event, data, droppable=event in DROPPABLE)

    @property
    def frame(self) -> str:
        """The plain-WebSocket form: {"event": name, "data": payload}."""
        if self._frame is None:
            self._frame = orjson.dumps({"event": self.event, "data": self.data}).decode()
        return self._frame

    @property
    def socketio_packet(self) -> str:
        """The Socket.IO form (protocol 5): an EVENT packet on the main namespace, 2["name",data]."""
        if self._socketio_packet is None:
            self._socketio_packet = "2" + orjson.dumps([self.event, self.data]).decode()
        return self._socketio_packet


class Overflow(Exception):
    """More undroppable events are waiting than the limit: the viewer is too slow to keep."""


class Outbox:
    def __init__(self, *, max_droppable: int, max_kept: int) -> None:
        self._items: deque[Message] = deque()
        self._droppable = 0
        self._max_droppable = max_droppable
        self._max_kept = max_kept
        self.dropped = 0
        # The sender parked in take(), if it is; a bare future costs less to wake than an Event.
        self._waiter: asyncio.Future[None] | None = None
        self._woken = False

    def __len__(self) -> int:
        return len(self._items)

    def put(self, message: Message, *, first: bool = False) -> None:
        """Queue a message (``first``: ahead of everything and past the bound, for the join snapshot).

        Raises Overflow when the undroppable backlog passes its bound; the caller disconnects.
        """
        if message.droppable:
            self._droppable += 1
            if self._droppable > self._max_droppable:
                self._drop_oldest_droppable()
        elif not first and len(self._items) - self._droppable >= self._max_kept:
            raise Overflow(f"{self._max_kept} undelivered events")
        if first:
            self._items.appendleft(message)
        else:
            self._items.append(message)
        self._release()

    def _drop_oldest_droppable(self) -> None:
        for index, queued in enumerate(self._items):
            if queued.droppable:
                del self._items[index]
                self._droppable -= 1
                self.dropped += 1
                return

    def wake(self) -> None:
        """Let the sender look at its viewer (it is being closed) even with nothing queued."""
        self._woken = True
        self._release()

    def _release(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def take(self) -> list[Message]:
        """Everything queued, in order, once there is something (or after wake(): maybe nothing)."""
        if not self._items and not self._woken:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        items = list(self._items)
        self._items.clear()
        self._droppable = 0
        self._woken = False
        return items
