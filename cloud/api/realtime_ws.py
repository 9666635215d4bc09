"""GET /v1/realtime (WebSocket): the viewer events as JSON frames, for clients without Socket.IO.

Query: ``channel`` and ``device`` (repeatable) choose rooms; none means everything. Each frame is
one ``{"event", "data"}`` object, or an array of them when a viewer fell behind and several waited.
"""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from fastapi import APIRouter
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from cloud.api.state import services
from cloud.realtime.direct_frames import frame_writer
from cloud.realtime.feed import feed
from cloud.realtime.hub import BadRooms, HubFull
from cloud.realtime.origins import origin_allowed
from cloud.realtime.outbox import Message, frame_text
from cloud.realtime.service import Realtime

log = structlog.get_logger(__name__)

# RFC 6455 close codes: policy violation, try again later.
_POLICY = 1008
_TRY_LATER = 1013


async def _until_closed(websocket: WebSocket, realtime: Realtime) -> str | None:
    """Read what the viewer sends, so a closed connection is noticed at once.

    Viewers only listen: each message is counted and dropped, and ``max_bad_packets`` of them end
    the connection (the reason is returned).
    """
    received = 0
    while (await websocket.receive())["type"] != "websocket.disconnect":
        received += 1
        realtime.errors.note("viewer_message", "a message from a viewer, which only listens")
        if received == realtime.settings.max_bad_packets:
            realtime.errors.note("viewer_closed", f"{received} messages from a viewer: closed")
            return "viewers only listen: too many messages"
    return None


class ViewerSocket:
    """A plain ASGI app rather than a FastAPI endpoint, for the frames' sake.

    Every event costs one frame per viewer, so the per-frame path is the fan-out's limit: frames go
    straight to the ASGI ``send`` the server gave us, past the state checks of Starlette's WebSocket
    and the exception wrappers of a FastAPI websocket route, which cost more CPU than the frame's
    own encoding (py-spy on bench/fanout.py). The handshake and the closes keep Starlette's
    WebSocket; its state stays CONNECTED while frames bypass it, which is all it checks.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        realtime = services(websocket).realtime
        try:
            await self._serve(websocket, realtime, send)
        finally:
            if websocket.application_state != WebSocketState.DISCONNECTED:
                with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                    await websocket.close()

    async def _serve(self, websocket: WebSocket, realtime: Realtime, send_asgi: Send) -> None:
        if not origin_allowed(websocket.headers, realtime.settings.allowed_origins, websocket.url.scheme):
            await websocket.close(code=_POLICY, reason="origin not allowed")
            return
        query = websocket.query_params
        try:
            viewer = realtime.hub.admit(
                query.getlist("channel"), query.getlist("device"), holding=realtime.socketio_viewers.waiting()
            )
        except (BadRooms, HubFull) as exc:
            # Accepted first: a browser sees the close code and reason, never a handshake's status.
            await websocket.accept()
            await websocket.close(
                code=_POLICY if isinstance(exc, BadRooms) else _TRY_LATER, reason=str(exc)[:120]
            )
            return

        async def send(batch: list[Message]) -> None:
            await send_asgi({"type": "websocket.send", "text": frame_text(batch)})

        try:
            await websocket.accept()
            sender = asyncio.create_task(feed(viewer, realtime.live, send, frame_writer(websocket.scope)))
            listener = asyncio.create_task(_until_closed(websocket, realtime))
            done, pending = await asyncio.wait({sender, listener}, return_when=asyncio.FIRST_COMPLETED)
            realtime.hub.leave(viewer)  # stops the sender even if a Redis call swallows its cancellation
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if listener in done and (reason := listener.result()) is not None:
                await websocket.close(code=_POLICY, reason=reason)
            elif sender in done:
                if (error := sender.exception()) is not None:
                    log.warning("viewer feed failed", error=repr(error))
                    await websocket.close(code=_TRY_LATER, reason="server error, reconnect")
                else:
                    await websocket.close(code=_TRY_LATER, reason=sender.result()[:120])
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the viewer went away; nothing to tell it
        finally:
            realtime.hub.leave(viewer)


router = APIRouter(routes=[WebSocketRoute("/v1/realtime", ViewerSocket(), name="viewer_socket")])
