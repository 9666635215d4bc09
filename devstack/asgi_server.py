"""Serve an ASGI app on a real socket inside the current event loop (tests, benches, demo).

Real sockets keep tests honest: HTTP and WebSocket go through uvicorn exactly as in production,
and the app's lifespan runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from devstack.ports import free_port


@asynccontextmanager
async def serve(app: Any, *, port: int | None = None, **options: Any) -> AsyncIterator[str]:
    """Yield the base URL once the server accepts connections; shut it down on exit."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()  # raises the startup error
            raise RuntimeError("uvicorn exited before it started")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
