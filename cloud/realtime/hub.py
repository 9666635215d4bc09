"""The viewers connected to this API process, by room; delivery into their bounded outboxes.

Transport-neutral: a Socket.IO session and a plain WebSocket are both a Viewer with a sender task
that drains its outbox, so one slow or dead viewer only ever fills its own queue.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import structlog

from cloud.api.settings import RealtimeSettings
from cloud.realtime.events import ALL_ROOM, channel_room, device_room
from cloud.realtime.outbox import Batch, Message, Outbox, Overflow

log = structlog.get_logger(__name__)

_DEVICE = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # giftwheel.contracts.motor.DeviceName
_CHANNEL = re.compile(r"[^\x00-\x1f\x7f]{1,128}")  # a gift's channel is free text, capped


class HubFull(Exception):
    """The connection limit of this process is reached."""


class BadRooms(ValueError):
    """The rooms a viewer asked for are not acceptable (bad names, too many)."""


@dataclass(eq=False, slots=True)
class Viewer:
    rooms: frozenset[str]
    channels: tuple[str, ...]
    devices: tuple[str, ...]
    outbox: Outbox
    # Why its sender must stop: we evict it, or it left (None while it is connected and welcome).
    evicted: str | None = None
    left: bool = False


def _checked(names: Iterable[str], pattern: re.Pattern[str], what: str) -> tuple[str, ...]:
    chosen = list(names)
    for name in chosen:
        if not pattern.fullmatch(name):
            raise BadRooms(f"bad {what} name {name[:70]!r}")
    return tuple(dict.fromkeys(chosen))


class Hub:
    def __init__(self, settings: RealtimeSettings) -> None:
        self._settings = settings
        self._rooms: dict[str, set[Viewer]] = {}
        self.viewers = 0
        self.evictions = 0
        # Frames handed to viewers: written at once (direct) or queued for a sender (a slow viewer,
        # a transport without direct frames, or the join snapshot still pending).
        self.frames_direct = 0
        self.frames_queued = 0

    @staticmethod
    def is_device_name(name: str) -> bool:
        return _DEVICE.fullmatch(name) is not None

    def full(self, holding: int = 0) -> bool:
        """No room for one more: ``holding`` counts connections that hold a place without being
        viewers yet (engine.io sessions before their Socket.IO CONNECT)."""
        return self.viewers + holding >= self._settings.max_connections

    def admit(self, channels: Iterable[str] = (), devices: Iterable[str] = (), *, holding: int = 0) -> Viewer:
        """A new viewer in the rooms of these channels and devices (none named: everything).

        Raises BadRooms or HubFull.
        """
        chosen_channels = _checked(channels, _CHANNEL, "channel")
        chosen_devices = _checked(devices, _DEVICE, "device")
        rooms = [channel_room(c) for c in chosen_channels] + [device_room(d) for d in chosen_devices]
        if len(rooms) > self._settings.max_rooms_per_viewer:
            raise BadRooms(f"at most {self._settings.max_rooms_per_viewer} channels and devices")
        if self.full(holding):
            raise HubFull(f"this server holds its limit of {self._settings.max_connections} viewers")
        outbox = Outbox(
            max_droppable=self._settings.max_pending_progress,
            max_kept=self._settings.max_pending_events,
        )
        viewer = Viewer(frozenset(rooms or [ALL_ROOM]), chosen_channels, chosen_devices, outbox)
        for room in viewer.rooms:
            self._rooms.setdefault(room, set()).add(viewer)
        self.viewers += 1
        return viewer

    def leave(self, viewer: Viewer) -> None:
        """The viewer is gone: out of its rooms, and its sender told to stop (idempotent)."""
        if viewer.left:
            return
        viewer.left = True
        viewer.evicted = viewer.evicted or "left"
        viewer.outbox.wake()
        for room in viewer.rooms:
            members = self._rooms.get(room)
            if members is not None:
                members.discard(viewer)
                if not members:
                    del self._rooms[room]
        self.viewers -= 1

    def deliver(self, message: Message, rooms: Iterable[str]) -> int:
        """Hand the message to every viewer in any of the rooms (once each); returns how many."""
        return self.deliver_batch(Batch([message]), rooms)

    def deliver_batch(self, batch: Batch, rooms: Iterable[str]) -> int:
        """Hand these messages, in order and together, to every viewer in any of the rooms."""
        targets: set[Viewer] = set()
        for room in rooms:
            targets.update(self._rooms.get(room, ()))
        direct = queued = 0
        for viewer in targets:
            if viewer.evicted is not None:
                continue
            part = batch.for_rooms(viewer.rooms)
            if part is None:
                continue
            try:
                if viewer.outbox.offer(part):
                    direct += 1
                else:
                    queued += 1
            except Overflow as exc:
                self.evict(viewer, f"too slow: {exc}")
        self.frames_direct += direct
        self.frames_queued += queued
        return len(targets)

    def evict(self, viewer: Viewer, reason: str) -> None:
        """Mark the viewer for disconnection; its sender closes the connection."""
        if viewer.evicted is None:
            viewer.evicted = reason
            self.evictions += 1
            log.info("viewer evicted", reason=reason)
        viewer.outbox.wake()
