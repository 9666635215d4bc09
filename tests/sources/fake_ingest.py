"""A small stand-in for the ingest API's WebSocket (the protocol of cloud/api/ingest_ws.py).

It stores events by eventId like the real API and can be told to misbehave: drop the
connection after some events, answer "unavailable" for a while, reject some events.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve

from devstack.ports import free_port

Decide = Callable[[dict[str, Any]], dict[str, Any] | None]


@dataclass
class FakeIngest:
    port: int
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: int = 0
    connections: int = 0
    auth_headers: list[str | None] = field(default_factory=list)
    # Close the connection (without answering) once this many events arrived in total.
    drop_after: int | None = None
    # Per event: None to store and ack it, or an error answer (without "seq").
    decide: Decide = lambda _event: None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        self.auth_headers.append(ws.request.headers.get("Authorization") if ws.request else None)
        seq = 0
        async for message in ws:
            document = orjson.loads(message)
            for event in document if isinstance(document, list) else [document]:
                self.received += 1
                if self.drop_after is not None and self.received >= self.drop_after:
                    self.drop_after = None
                    # As if the API process died: no closing handshake, the socket just goes.
                    ws.transport.abort()
                    return
                answer = self.decide(event)
                if answer is None:
                    duplicate = event["eventId"] in self.stored
                    self.stored.setdefault(event["eventId"], event)
                    answer = {"eventId": event["eventId"], "duplicate": duplicate}
                await ws.send(orjson.dumps({"seq": seq, **answer}).decode())
                seq += 1


@asynccontextmanager
async def fake_ingest() -> AsyncIterator[FakeIngest]:
    fake = FakeIngest(port=free_port())
    async with serve(fake.handler, "127.0.0.1", fake.port):
        yield fake
    await asyncio.sleep(0)
