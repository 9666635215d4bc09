"""What viewers receive: event names, rooms and the compact payloads. No I/O."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any

from giftwheel.contracts import GiftEvent


class ViewerEvent(StrEnum):
    GIFT_ACCEPTED = "gift.accepted"
    MOTOR_PROGRESS = "motor.progress"
    MOTOR_DONE = "motor.done"
    # Sent once on join: the current state of the motors and the recent gifts (late joiners).
    STATE = "state"


# Progress updates supersede each other, so a slow viewer may lose old ones; nothing else is dropped.
DROPPABLE = frozenset({ViewerEvent.MOTOR_PROGRESS.value})

# On the bus between API instances only: several events published as one message, data
# [[name, payload, rooms], ...] addressed to the union of their rooms; viewers receive the ones of
# their rooms as their own events (one frame on a plain WebSocket).
BATCH = "batch"

# How events reach viewers on every API instance (Realtime.publish, Realtime.publish_batch).
Publish = Callable[[str, dict[str, Any], list[str]], Awaitable[None]]
PublishBatch = Callable[[list[tuple[str, dict[str, Any], list[str]]]], Awaitable[None]]

# Viewers that name no channel or device see everything.
ALL_ROOM = "all"


def channel_room(channel: str) -> str:
    return f"channel:{channel}"


def device_room(device: str) -> str:
    return f"device:{device}"


def gift_rooms(gift: dict[str, Any]) -> list[str]:
    channel = gift.get("channel")
    return [ALL_ROOM, channel_room(channel)] if isinstance(channel, str) else [ALL_ROOM]


def device_rooms(device: str) -> list[str]:
    return [ALL_ROOM, device_room(device)]


def gift_payload(event: GiftEvent) -> dict[str, Any]:
    """Who sent what; ``baseRounds`` is diamond x quantity before any rule multiplier or cap."""
    payload: dict[str, Any] = {
        "eventId": event.event_id,
        "platform": event.platform,
        "user": event.user_name or event.user_id,
        "giftName": event.gift_name,
        "diamond": event.diamond,
        "quantity": event.quantity,
        "baseRounds": event.rounds,
        "ts": event.timestamp,
    }
    if event.channel is not None:
        payload["channel"] = event.channel
    return payload
