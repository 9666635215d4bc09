"""Socket.IO viewers: admission on connect, one sender per session paced by what it has read.

Clients choose rooms with ``auth`` ``{"channels": [...], "devices": [...]}`` or the query string
(``?channel=...&device=...``); none means everything. Events arrive under their own names
(``gift.accepted``, ``motor.progress``, ``motor.done``, ``state``).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import parse_qs

import socketio
import structlog

from cloud.compat.socketio import AsyncServer
from cloud.realtime.feed import feed
from cloud.realtime.hub import BadRooms, Hub, HubFull, Viewer
from cloud.realtime.live_state import LiveState
from cloud.realtime.outbox import Message

log = structlog.get_logger(__name__)
NAMESPACE = "/"


def _names(auth: Any, key: str, query: dict[str, list[str]], param: str) -> list[str]:
    if isinstance(auth, dict) and isinstance(auth.get(key), list):
        return [str(name) for name in auth[key]]
    return query.get(param, [])


class SocketIoViewers:
    def __init__(self, sio: AsyncServer, hub: Hub, live: LiveState) -> None:
        self._sio = sio
        self._hub = hub
        self._live = live
        self._sessions: dict[str, tuple[Viewer, asyncio.Task[None]]] = {}
        sio.on("connect", self.connect)
        sio.on("disconnect", self.disconnect)

    async def connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        query = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            viewer = self._hub.admit(
                _names(auth, "channels", query, "channel"),
                _names(auth, "devices", query, "device"),
                holding=self.waiting() - 1,  # this session is one of them
            )
        except (BadRooms, HubFull) as exc:
            raise socketio.exceptions.ConnectionRefusedError(str(exc)) from None
        self._sessions[sid] = (viewer, asyncio.create_task(self._send(sid, viewer)))

    def waiting(self) -> int:
        """engine.io sessions open that are not (yet) viewers: a handshake without its CONNECT."""
        return self._sio.session_count() - len(self._sessions)

    async def disconnect(self, sid: str, reason: str = "") -> None:
        session = self._sessions.pop(sid, None)
        if session is None:
            return
        viewer, sender = session
        self._hub.leave(viewer)  # the sender returns at its next wake-up even if a cancel is lost
        if sender is not asyncio.current_task():  # else the sender itself is hanging up
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender

    async def close(self) -> None:
        for sid in list(self._sessions):
            await self.disconnect(sid)

    async def _send(self, sid: str, viewer: Viewer) -> None:
        eio_sid = self._sio.engineio_sid(sid, NAMESPACE)
        if eio_sid is None:  # gone before its sender started; disconnect() leaves the hub
            return

        async def send(batch: list[Message]) -> None:
            for message in batch:
                # Straight to engine.io with the packet encoded once per event: sio.emit(to=sid)
                # would encode it again for every viewer and start a task per packet.
                await self._sio.send_encoded(eio_sid, message.socketio_packet)
            # engine.io queues without bound; waiting until its writer has taken the batch keeps a
            # slow reader's backlog in our bounded outbox (where old progress can be dropped).
            await self._sio.written(eio_sid)

        try:
            reason = await feed(viewer, self._live, send)
        except Exception as exc:
            log.warning("socket.io viewer feed failed", error=repr(exc))
            reason = "server error"
        if not viewer.left:
            log.info("socket.io viewer disconnected", reason=reason)
            await self._sio.disconnect(sid, ignore_queue=True)
