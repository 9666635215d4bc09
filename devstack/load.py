"""Open-loop gift load: events posted on a fixed schedule, each retried until the API answers.

Open loop (the schedule does not wait for answers) is what a live room does to the API; retrying
until a 202 or 200 is what a well-behaved source does, so "accepted" means every planned event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

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


async def send_paced(
    url: str,
    api_key: str,
    events: Sequence[dict[str, Any]],
    rate_per_s: float,
    *,
    retry_for_s: float = 120.0,
    max_in_flight: int = 512,
) -> LoadResult:
    result = LoadResult()
    slots = asyncio.Semaphore(max_in_flight)
    headers = {"Authorization": f"Bearer {api_key}"}
    start = time.monotonic()

    async def deliver(client: httpx.AsyncClient, event: dict[str, Any], delivery: Delivery) -> None:
        deadline = time.monotonic() + retry_for_s
        backoff_s = 0.05
        async with slots:
            while True:
                delivery.attempts += 1
                delivery.posted_ms = time.time() * 1000
                try:
                    response = await client.post("/v1/events", json=event, headers=headers)
                except httpx.HTTPError as exc:
                    name = type(exc).__name__
                    result.errors[name] = result.errors.get(name, 0) + 1
                else:
                    if response.status_code not in RETRY_STATUSES:
                        delivery.status = response.status_code
                        delivery.answered_ms = time.time() * 1000
                        return
                    key = str(response.status_code)
                    result.errors[key] = result.errors.get(key, 0) + 1
                if time.monotonic() > deadline:
                    return
                await asyncio.sleep(backoff_s)
                backoff_s = min(backoff_s * 2, 1.0)

    limits = httpx.Limits(max_connections=max_in_flight, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:
        tasks = []
        for index, event in enumerate(events):
            due = start + index / rate_per_s
            if (wait := due - time.monotonic()) > 0:
                await asyncio.sleep(wait)
            delivery = Delivery(str(event["eventId"]), time.time() * 1000)
            result.deliveries[delivery.event_id] = delivery
            tasks.append(asyncio.create_task(deliver(client, event, delivery)))
        await asyncio.gather(*tasks)
    result.duration_s = time.monotonic() - start
    return result
