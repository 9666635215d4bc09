"""Open-loop gift load: events posted on a fixed schedule, each retried until the API answers.

Open loop (the schedule does not wait for answers) is what a live room does to the API; retrying
until a 202 or 200 is what a well-behaved source does, so "accepted" means every planned event.
Latency is measured from each event's scheduled time, so a slow answer cannot hide the events
queued behind it (no coordinated omission). The HTTP client is devstack.http1's keep-alive
connection: httpx costs 10-40x its CPU per call (bench/http_client.py), on the cores the API under
test runs on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from devstack.http1 import Http1Connection

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

    head = f"Authorization: Bearer {api_key}\r\nContent-Type: application/json\r\n".encode()

    async def deliver(connection: Http1Connection, body: bytes, delivery: Delivery) -> None:
        deadline = time.monotonic() + retry_for_s
        backoff_s = 0.05
        while True:
            delivery.attempts += 1
            delivery.posted_ms = time.time() * 1000
            try:
                status = (await connection.request("POST", "/v1/events", head, body)).status
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
        connection = Http1Connection(host, port)
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
