"""Outbound HTTP for the REST API call node, with a log of recent calls for tests and the demo."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

log = structlog.get_logger("tb_emulator.webhook")


@dataclass(slots=True)
class HttpResult:
    status_code: int | None
    reason: str
    body: str
    headers: dict[str, str]
    error: str | None = None


class HttpPoster:
    def __init__(self, *, max_parallel: int = 64, connections: int = 8, keep_calls: int = 1000) -> None:
        self._client: httpx.AsyncClient | None = None
        self._connections = connections
        self._gate = asyncio.Semaphore(max_parallel)
        self.calls: deque[dict[str, Any]] = deque(maxlen=keep_calls)
        self.in_flight = 0

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(limits=httpx.Limits(max_connections=self._connections))
        return self._client

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout_s: float
    ) -> HttpResult:
        started = time.time()
        self.in_flight += 1
        try:
            async with self._gate:
                response = await self._http().request(
                    method, url, headers=headers, content=body, timeout=timeout_s
                )
            result = HttpResult(
                response.status_code, response.reason_phrase, response.text, dict(response.headers)
            )
        except httpx.HTTPError as exc:
            result = HttpResult(None, "", "", {}, error=f"{type(exc).__name__}: {exc}")
        finally:
            self.in_flight -= 1
        self.calls.append(
            {
                "ts": int(started * 1000),
                "method": method,
                "url": url,
                "headers": headers,
                "body": body.decode("utf-8", "replace") if body else None,
                "statusCode": result.status_code,
                "error": result.error,
                "durationMs": round((time.time() - started) * 1000, 2),
            }
        )
        if result.error or (result.status_code or 0) >= 400:
            log.info("webhook call failed", url=url, status=result.status_code, error=result.error)
        return result

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
