"""The sender side of one viewer: the join snapshot first, then its outbox, at the pace it reads."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from cloud.realtime.events import ViewerEvent
from cloud.realtime.hub import Viewer
from cloud.realtime.live_state import LiveState
from cloud.realtime.outbox import Message, WriteFrame

Send = Callable[[list[Message]], Awaitable[None]]


async def feed(viewer: Viewer, live: LiveState, send: Send, write: WriteFrame | None = None) -> str:
    """Send until the hub evicts the viewer; returns why. Transport errors propagate to the caller.

    ``write``, if the connection offers direct frames, takes over while the outbox is idle, from
    when the snapshot is out (it must reach the viewer first).

    The viewer is already in its rooms when the snapshot is read, so nothing published meanwhile is
    missed; an update older than the snapshot may follow it, and clients keep the newest by ``ts``.
    """
    snapshot = await live.snapshot(viewer)
    viewer.outbox.put(Message(ViewerEvent.STATE.value, snapshot), first=True)
    while True:
        batch = await viewer.outbox.take()
        if viewer.evicted is not None:
            return viewer.evicted
        if batch:
            await send(batch)
            if write is not None:
                viewer.outbox.write_directly(write)
                write = None
