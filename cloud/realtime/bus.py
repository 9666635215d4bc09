"""The bus between API instances: python-socketio's AsyncRedisManager, delivering through our Hub.

An event emitted to one of our rooms on any instance is published on a Redis channel; every
instance (this one included) hands it to its Hub, which queues it per viewer, Socket.IO and plain
WebSocket alike. Emits addressed to a single Socket.IO session (what the Hub's senders do) go
straight to that session, as python-socketio would.
"""

from __future__ import annotations

from typing import Any

import socketio

from cloud.realtime.events import ALL_ROOM, BATCH
from cloud.realtime.hub import Hub
from cloud.realtime.outbox import Batch, Message

_ROOM_PREFIXES = ("channel:", "device:")


def _our_rooms(room: object) -> list[str] | None:
    rooms = room if isinstance(room, list) else [room]
    if rooms and all(isinstance(r, str) and (r == ALL_ROOM or r.startswith(_ROOM_PREFIXES)) for r in rooms):
        return [str(r) for r in rooms]
    return None


class _HubDelivery(socketio.AsyncManager):  # type: ignore[misc]
    """Sits below AsyncPubSubManager in the MRO, so its local delivery (the ``super().emit`` of
    ``_handle_emit``) lands here for messages from any instance."""

    hub: Hub

    async def emit(
        self,
        event: str,
        data: Any,
        namespace: str | None = None,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        rooms = _our_rooms(to or room)
        if rooms is not None and callback is None and (namespace or "/") == "/":
            if event == BATCH:
                messages = [Message.of(name, payload) for name, payload, _ in data]
                rooms_of = [frozenset(message_rooms) for _, _, message_rooms in data]
                self.hub.deliver_batch(Batch(messages, rooms_of), rooms)
            else:
                self.hub.deliver(Message.of(event, data), rooms)
            return
        await super().emit(
            event, data, namespace, room=to or room, skip_sid=skip_sid, callback=callback, **kwargs
        )


class FanoutManager(socketio.AsyncRedisManager, _HubDelivery):  # type: ignore[misc]
    def __init__(self, hub: Hub, *, url: str, channel: str) -> None:
        super().__init__(url=url, channel=channel)
        self.hub = hub
