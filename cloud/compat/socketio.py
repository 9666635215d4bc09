"""python-socketio's and python-engineio's internals that the realtime endpoint needs, in one place.

python-socketio's server holds its engine.io server (``eio``) and is released with it by the same
author: one module for both. Checked against python-socketio 5.18.1 with python-engineio 4.15.1
(:data:`CHECKED`; pyproject allows exactly these ranges, tests/compat/test_socketio.py fails on
anything else or on a moved internal). What the endpoint relies on:

- ``AsyncServer._handle_eio_message`` and ``_handle_eio_disconnect``: the server registers them,
  bound to itself, as engine.io's message and disconnect handlers when it is built, so an override
  in a subclass sees every packet before python-socketio decodes it.
- ``eio.sockets`` (engine.io session id to its socket), a socket's ``close(wait=False, reason=...)``
  and its ``queue`` (an asyncio.Queue its writer drains; a None in it makes the writer close a
  WebSocket once what precedes is out), ``eio.reason.SERVER_DISCONNECT``, and ``eio.send``, which
  takes an already encoded Socket.IO packet.
- ``manager_initialized`` and ``manager.initialize()``: python-socketio starts its client manager
  (our Redis bus) at the first Socket.IO connection unless the flag says it has been; and the
  manager's ``eio_sid_from_sid``. Changed, viewers on plain WebSockets would get no events until a
  Socket.IO client connects, or the bus would listen twice. At shutdown, the manager's ``thread``
  (the listening task ``initialize`` starts) and AsyncRedisManager's ``redis`` client.
- ``AsyncPubSubManager._handle_emit`` delivers an event from the bus with ``super().emit``: the
  class below it in the MRO (``cloud/realtime/bus.py``) receives what every instance publishes.
"""

from __future__ import annotations

import asyncio
from typing import Any

import socketio

# Distribution: the versions this module's assumptions were checked against.
CHECKED = {"python-socketio": ">=5.18,<5.19", "python-engineio": ">=4.15,<4.16"}


class AsyncServer(socketio.AsyncServer):  # type: ignore[misc]
    """python-socketio's server, with its engine.io entry points and sessions under names of ours."""

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        await self.engineio_message(eio_sid, data)

    async def _handle_eio_disconnect(self, eio_sid: str, reason: Any) -> None:
        await self.engineio_disconnect(eio_sid, reason)

    async def engineio_message(self, eio_sid: str, data: Any) -> None:
        """An engine.io message (a Socket.IO packet, still encoded) from a session."""
        await super()._handle_eio_message(eio_sid, data)

    async def engineio_disconnect(self, eio_sid: str, reason: Any) -> None:
        """An engine.io session ended, whoever ended it."""
        await super()._handle_eio_disconnect(eio_sid, reason)

    def has_session(self, eio_sid: str) -> bool:
        return eio_sid in self.eio.sockets

    def session_count(self) -> int:
        """engine.io sessions open, Socket.IO-connected or not."""
        return len(self.eio.sockets)

    async def end_session_now(self, eio_sid: str) -> None:
        """End the session and its transport now.

        engine.io's own disconnect waits until the client has taken the CLOSE packet (forever for a
        polling client that stops polling) and leaves a WebSocket open until the ping timeout; the
        None tells the session's writer to close the WebSocket once CLOSE is out.
        """
        socket = self.eio.sockets.pop(eio_sid, None)
        if socket is not None:
            await socket.close(wait=False, reason=self.eio.reason.SERVER_DISCONNECT)
            socket.queue.put_nowait(None)

    def engineio_sid(self, sid: str, namespace: str) -> str | None:
        """The engine.io session of a Socket.IO session, None once it is gone."""
        eio_sid: str | None = self.manager.eio_sid_from_sid(sid, namespace)
        return eio_sid

    async def send_encoded(self, eio_sid: str, encoded_packet: str) -> None:
        """Queue a Socket.IO packet encoded once (for many sessions) on one session."""
        await self.eio.send(eio_sid, encoded_packet)

    async def written(self, eio_sid: str) -> None:
        """Wait until the session's writer has taken everything queued on it so far."""
        socket = self.eio.sockets.get(eio_sid)
        if socket is not None:
            await socket.queue.join()

    def start_client_manager(self) -> None:
        """Start the client manager now rather than at the first Socket.IO connection."""
        self.manager_initialized = True
        self.manager.initialize()

    async def stop_client_manager(self, timeout_s: float) -> None:
        """Stop what :meth:`start_client_manager` started: cancel the manager's listening task and
        wait for it at most ``timeout_s`` (its loop is python-socketio's, and a cancel swallowed by
        redis-py must not hang shutdown), then close its Redis client."""
        listening = getattr(self.manager, "thread", None)  # set by initialize() only
        if listening is not None:
            listening.cancel()
            await asyncio.wait({listening}, timeout=timeout_s)
        redis = getattr(self.manager, "redis", None)  # AsyncRedisManager's; None until it connects
        if redis is not None:
            await redis.aclose()
