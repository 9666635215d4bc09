"""Serve an ASGI app on a real socket inside the current event loop (tests, benches, demo, emulator).

Real sockets keep tests honest: HTTP and WebSocket go through uvicorn exactly as in production,
and the app's lifespan runs.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


@asynccontextmanager
async def serve(app: Any, *, host: str = "127.0.0.1", port: int = 0, **options: Any) -> AsyncIterator[str]:
    """Yield the base URL once the server accepts connections (port 0: any free port); shut it down
    on exit. A port that cannot be bound raises OSError here (uvicorn itself would exit the process)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024)
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()  # raises the startup error
            raise RuntimeError("uvicorn exited before it started")
        await asyncio.sleep(0.01)
    try:
        yield f"http://[{host}]:{port}" if family == socket.AF_INET6 else f"http://{host}:{port}"
    finally:
        server.should_exit = True
        await task
