"""Open-loop gift load: events posted on a fixed schedule, each retried until the API answers.

Open loop (the schedule does not wait for answers) is what a live room does to the API; retrying
until a 202 or 200 is what a well-behaved source does, so "accepted" means every planned event.
Latency is measured from each event's scheduled time, so a slow answer cannot hide the events
queued behind it (no coordinated omission). The HTTP client is a few lines over asyncio streams:
general-purpose clients cost more CPU per request than the API under test, on the same 2 cores.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

RETRY_STATUSES = {502, 503, 504}


@dataclass
class Delivery:
    event_id: str
    scheduled_ms: float
    posted_ms: float = 0.0  # the attempt that got the answer
    answered_ms: float = 0.0
    status: int = 0
    attempts: int = 0


@dataclass
class LoadResult:
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0

    def with_status(self, *statuses: int) -> list[Delivery]:
        return [d for d in self.deliveries.values() if d.status in statuses]

    def count_error(self, name: str) -> None:
        self.errors[name] = self.errors.get(name, 0) + 1


class _Connection:
    """One keep-alive HTTP/1.1 connection: POST a JSON body, read status and body."""

    def __init__(self, host: str, port: int, api_key: str) -> None:
        self._host, self._port = host, port
        self._head = (
            f"Host: {host}:{port}\r\nAuthorization: Bearer {api_key}\r\nContent-Type: application/json\r\n"
        ).encode()
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, path: str, body: bytes) -> int:
        reused = self._streams is not None
        try:
            return await self._exchange(path, body)
        except (OSError, asyncio.IncompleteReadError):
            if not reused:
                raise
        # The server closed an idle keep-alive connection: one fresh try, as any HTTP client does.
        return await self._exchange(path, body)

    async def _exchange(self, path: str, body: bytes) -> int:
        if self._streams is None:
            self._streams = await asyncio.open_connection(self._host, self._port)
        reader, writer = self._streams
        try:
            writer.write(
                b"POST " + path.encode() + b" HTTP/1.1\r\n" + self._head
                + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
            )  # fmt: skip
            status = int((await reader.readuntil(b"\r\n")).split(b" ", 2)[1])
            length = 0
            while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
            return status
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
            self._streams = None


async def send_paced(
    url: str,
    api_key: str,
    events: Sequence[dict[str, Any]],
    rate_per_s: float,
    *,
    retry_for_s: float = 120.0,
    connections: int = 64,
) -> LoadResult:
    result = LoadResult()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    due: asyncio.Queue[tuple[bytes, Delivery] | None] = asyncio.Queue()
    start = time.monotonic()

    async def deliver(connection: _Connection, body: bytes, delivery: Delivery) -> None:
        deadline = time.monotonic() + retry_for_s
        backoff_s = 0.05
        while True:
            delivery.attempts += 1
            delivery.posted_ms = time.time() * 1000
            try:
                status = await connection.post("/v1/events", body)
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                result.count_error(type(exc).__name__)
            else:
                if status not in RETRY_STATUSES:
                    delivery.status = status
                    delivery.answered_ms = time.time() * 1000
                    return
                result.count_error(str(status))
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, 1.0)

    async def sender() -> None:
        connection = _Connection(host, port, api_key)
        try:
            while (item := await due.get()) is not None:
                await deliver(connection, *item)
        finally:
            connection.close()

    senders = [asyncio.create_task(sender()) for _ in range(connections)]
    for index, event in enumerate(events):
        if (wait := start + index / rate_per_s - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        delivery = Delivery(str(event["eventId"]), time.time() * 1000)
        result.deliveries[delivery.event_id] = delivery
        due.put_nowait((orjson.dumps(event), delivery))
    for _ in senders:
        due.put_nowait(None)
    await asyncio.gather(*senders)
    result.duration_s = time.monotonic() - start
    return result
