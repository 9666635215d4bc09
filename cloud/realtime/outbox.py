"""A viewer's bounded queue: old progress updates are dropped first, gifts and done events never.

No framework imports: the Hub fills it, a per-viewer sender drains it. A viewer whose connection
takes direct frames (cloud/realtime/direct_frames.py) skips the queue while its line is idle: the
frame is written at once and no sender wakes; only what the connection cannot take now is queued.
"""

from __future__ import annotations

import asyncio
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from cloud.realtime.events import DROPPABLE

# Puts a whole frame on a viewer's connection now, or returns False if it cannot take one now.
WriteFrame = Callable[[bytes], bool]


def text_frame(payload: bytes) -> bytes:
    """A complete, final, unmasked RFC 6455 text frame carrying these UTF-8 bytes."""
    size = len(payload)
    if size < 126:
        return struct.pack("!BB", 0x81, size) + payload
    if size < 1 << 16:
        return struct.pack("!BBH", 0x81, 126, size) + payload
    return struct.pack("!BBQ", 0x81, 127, size) + payload


@dataclass(slots=True)
class Message:
    """One event for viewers, encoded at most once per transport however many viewers get it."""

    event: str
    data: Any
    droppable: bool = False
    _frame: str | None = field(default=None, repr=False)
    _ws_frame: bytes | None = field(default=None, repr=False)
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
    def ws_frame(self) -> bytes:
        """The plain-WebSocket form as a whole text frame, for direct writes."""
        if self._ws_frame is None:
            self._ws_frame = text_frame(self.frame.encode())
        return self._ws_frame

    @property
    def socketio_packet(self) -> str:
        """The Socket.IO form (protocol 5): an EVENT packet on the main namespace, 2["name",data]."""
        if self._socketio_packet is None:
            self._socketio_packet = "2" + orjson.dumps([self.event, self.data]).decode()
        return self._socketio_packet


def frame_text(messages: list[Message]) -> str:
    """The plain-WebSocket frame of several events: one object, or an array of them in order."""
    if len(messages) == 1:
        return messages[0].frame
    return "[" + ",".join(m.frame for m in messages) + "]"


@dataclass(slots=True)
class Batch:
    """Events that travel together (a flush of announcements or progress): one frame for a direct
    write, encoded once however many viewers take it; queued, they are separate messages again.

    ``rooms``, if given, names each message's rooms: a viewer gets the messages of its rooms only,
    as one batch per distinct set of rooms (viewers share a few), built and encoded once.
    """

    messages: list[Message]
    rooms: list[frozenset[str]] | None = None
    _ws_frame: bytes | None = field(default=None, repr=False)
    _parts: dict[frozenset[str], Batch | None] = field(default_factory=dict, repr=False)

    def for_rooms(self, viewer_rooms: frozenset[str]) -> Batch | None:
        """The part of this batch for a viewer in these rooms (None: nothing for it)."""
        if self.rooms is None:
            return self
        if viewer_rooms not in self._parts:
            mine = [
                m for m, r in zip(self.messages, self.rooms, strict=True) if not r.isdisjoint(viewer_rooms)
            ]
            self._parts[viewer_rooms] = Batch(mine) if mine else None
        return self._parts[viewer_rooms]

    @property
    def ws_frame(self) -> bytes:
        if self._ws_frame is None:
            if len(self.messages) == 1:
                self._ws_frame = self.messages[0].ws_frame
            else:
                self._ws_frame = text_frame(frame_text(self.messages).encode())
        return self._ws_frame


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
        self._write: WriteFrame | None = None
        # The sender holds a batch taken from here and may not have written it yet.
        self._sending = False

    def __len__(self) -> int:
        return len(self._items)

    def write_directly(self, write: WriteFrame) -> None:
        """From now on, while nothing waits here, hand messages to ``write`` instead of the sender."""
        self._write = write

    def offer(self, batch: Batch) -> bool:
        """Write the batch directly if the line is idle and takes it (True), else queue its messages.

        Raises Overflow as put() does.
        """
        # Order holds: a direct write only ever follows frames already on the connection.
        if self._write is not None and not self._items and not self._sending and self._write(batch.ws_frame):
            return True
        for message in batch.messages:
            self.put(message)
        return False

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
        """Everything queued, in order, once there is something (or after wake(): maybe nothing).

        The caller sends the batch before it calls take() again.
        """
        self._sending = False
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
        self._sending = bool(items)
        return items
