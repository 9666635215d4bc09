"""The Socket.IO endpoint as a route of the FastAPI app; the server itself is built in the lifespan."""

from __future__ import annotations

from starlette.types import Receive, Scope, Send


async def socketio_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
    await scope["app"].state.realtime.asgi(scope, receive, send)
