"""Outbound HTTP for the REST API call node, with a log of recent calls for tests and the demo.

Shaped like ThingsBoard's TbHttpClient (Spring WebClient on a Reactor Netty pool): per origin at
most ``connections`` keep-alive connections, at most ``pending_max`` requests waiting for one (more
fail at once), a wait for a connection bounded by ``acquire_timeout_s``, and the node's read
timeout from the request's write to its response. Every refusal or timeout is a failed call, which
the node routes to Failure: a slow API costs failures, never an unbounded queue.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import structlog

from devstack.http1 import Http1Connection, HttpProtocolError

log = structlog.get_logger("tb_emulator.webhook")

# Added by the connection itself; a configured value would be sent twice.
_OWN_HEADERS = frozenset({"host", "content-length"})


@dataclass(slots=True)
class HttpResult:
    status_code: int | None
    reason: str
    body: str
    headers: dict[str, str]
    error: str | None = None


def _failed(kind: str, detail: str) -> HttpResult:
    return HttpResult(None, "", "", {}, error=f"{kind}: {detail}")


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str  # path and query, as sent on the request line


@functools.lru_cache(maxsize=256)
def _parse_url(url: str) -> _Target:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"Url string is invalid: {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return _Target(parts.scheme, parts.hostname, port, path)


def _head(headers: dict[str, str]) -> bytes:
    lines = []
    for name, value in headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError(f"header {name!r} contains CR or LF")
        if name.lower() not in _OWN_HEADERS:
            lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode()


class _Origin:
    """The connections to one scheme://host:port and the requests waiting for one of them."""

    def __init__(self, target: _Target, tls: ssl.SSLContext | None, connections: int) -> None:
        # Most recently used last: popped first, so a light load keeps reusing warm connections.
        self.idle = [Http1Connection(target.host, target.port, tls=tls) for _ in range(connections)]
        self.slots = asyncio.Semaphore(connections)
        self.waiting = 0


class HttpPoster:
    def __init__(
        self,
        *,
        connections: int = 16,
        pending_max: int = 32,
        acquire_timeout_s: float = 45.0,
        connect_timeout_s: float = 30.0,
        keep_calls: int = 1000,
    ) -> None:
        self._connections = connections
        self._pending_max = pending_max
        self._acquire_timeout_s = acquire_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._origins: dict[tuple[str, str, int], _Origin] = {}
        self._tls: ssl.SSLContext | None = None
        self.calls: deque[dict[str, Any]] = deque(maxlen=keep_calls)
        self.in_flight = 0  # waiting for a connection or on the wire

    async def request(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout_s: float
    ) -> HttpResult:
        started = time.time()
        self.in_flight += 1
        try:
            result = await self._call(method, url, headers, body, timeout_s)
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

    async def _call(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None, timeout_s: float
    ) -> HttpResult:
        try:
            target = _parse_url(url)
            head = _head(headers)
        except ValueError as exc:
            return _failed("IllegalArgumentException", str(exc))
        origin = self._origin(target)
        if origin.slots.locked():
            if origin.waiting >= self._pending_max:
                return _failed(
                    "PoolAcquirePendingLimitException",
                    f"Pending acquire queue has reached its maximum size of {self._pending_max}",
                )
            origin.waiting += 1
            try:
                async with asyncio.timeout(self._acquire_timeout_s):
                    await origin.slots.acquire()
            except TimeoutError:
                return _failed(
                    "PoolAcquireTimeoutException",
                    f"no connection to {target.host}:{target.port} within {self._acquire_timeout_s} s",
                )
            finally:
                origin.waiting -= 1
        else:
            await origin.slots.acquire()
        connection = origin.idle.pop()
        try:
            return await self._exchange(connection, target, method, head, body, timeout_s)
        finally:
            origin.idle.append(connection)
            origin.slots.release()

    async def _exchange(
        self,
        connection: Http1Connection,
        target: _Target,
        method: str,
        head: bytes,
        body: bytes | None,
        timeout_s: float,
    ) -> HttpResult:
        if not connection.is_idle_open:
            connection.close()  # closed by the server while idle: open a fresh one
            try:
                async with asyncio.timeout(self._connect_timeout_s):
                    await connection.connect()
            except TimeoutError:
                return _failed(
                    "ConnectTimeoutException", f"connection timed out: {target.host}:{target.port}"
                )
            except OSError as exc:
                return _failed(type(exc).__name__, str(exc))
        try:
            async with asyncio.timeout(timeout_s):
                response = await connection.request(method, target.path, head, body)
        except TimeoutError:
            connection.close()
            return _failed("ReadTimeoutException", f"no response within {timeout_s} s")
        except (OSError, asyncio.IncompleteReadError, HttpProtocolError) as exc:
            return _failed(type(exc).__name__, str(exc) or "connection closed by the server")
        return HttpResult(
            response.status,
            response.reason,
            response.body.decode("utf-8", "replace"),
            response.headers,
        )

    def _origin(self, target: _Target) -> _Origin:
        key = (target.scheme, target.host, target.port)
        origin = self._origins.get(key)
        if origin is None:
            if target.scheme == "https" and self._tls is None:
                self._tls = ssl.create_default_context()
            tls = self._tls if target.scheme == "https" else None
            origin = self._origins[key] = _Origin(target, tls, self._connections)
        return origin

    async def close(self) -> None:
        for origin in self._origins.values():
            for connection in origin.idle:
                connection.close()
        self._origins.clear()
