"""One Redis connection with many commands in flight: the ingest hot path's way to Redis.

redis-py takes a pooled connection, writes one command and reads its reply per call, which costs
more than the Lua script it runs. Here every call packs its command (hiredis), writes it to the one
connection and awaits a future; replies arrive in order (Redis answers a connection's commands in
order), so ``data_received`` resolves the oldest futures.

Kept for its measured figure against redis-py 8.2 with hiredis 3.5 (``python -m bench.redis_append
--seconds 5 --repeat 2``, GiftQueue.append of one event per call on uvloop, 2-core box, two rounds):
at 64 calls in flight 29,000-33,000 appends/s, 27-29 us client CPU each, p99 4.8-6.4 ms, against
11,900-12,200/s, 82-83 us, p99 7.1-9.6 ms: 2.4-3.3x the rate and a third of the CPU from 16 to 256
in flight, 1.5-1.6x and half the CPU one at a time. With 50 events a call Redis's own work dominates
and neither wins consistently.

Failure is all-or-nothing for what is in flight: when the connection drops or a reply is late,
every pending call fails with a redis-py ConnectionError/TimeoutError (the outcome of those
commands is unknown, so callers must treat them as not done and may retry), the connection is
closed, and the next call opens a new one. Single Redis node only (no cluster redirections).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import hiredis
from redis.asyncio.connection import SSLConnection, UnixDomainSocketConnection, parse_url
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

Arg = str | bytes | int | float

_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}


@dataclass(frozen=True, slots=True)
class _Endpoint:
    host: str
    port: int
    path: str | None  # a unix socket instead of host:port
    ssl: ssl.SSLContext | None
    username: str | None
    password: str | None
    db: int

    @classmethod
    def from_url(cls, url: str) -> _Endpoint:
        parts = parse_url(url)
        connection_class = parts.get("connection_class")
        context = None
        if connection_class is SSLConnection:
            cafile = parts.get("ssl_ca_certs")
            context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
            reqs = _CERT_REQS[str(parts.get("ssl_cert_reqs", "required")).lower()]
            if reqs != ssl.CERT_REQUIRED:
                context.check_hostname = False
            context.verify_mode = reqs
        return cls(
            host=str(parts.get("host", "localhost")),
            port=int(parts.get("port", 6379)),
            path=parts.get("path") if connection_class is UnixDomainSocketConnection else None,
            ssl=context,
            username=parts.get("username"),
            password=parts.get("password"),
            db=int(parts.get("db", 0)),
        )

    def handshake(self) -> list[tuple[Arg, ...]]:
        """Commands a new connection sends before any caller's: AUTH and SELECT, when needed."""
        commands: list[tuple[Arg, ...]] = []
        if self.password is not None:
            auth: tuple[Arg, ...] = ("AUTH", self.password)
            commands.append(auth if self.username is None else ("AUTH", self.username, self.password))
        if self.db:
            commands.append(("SELECT", self.db))
        return commands


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self._reader = hiredis.Reader(replyError=ResponseError)
        self.pending: deque[asyncio.Future[Any]] = deque()
        self.transport: asyncio.Transport | None = None
        self.lost: Exception | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while (reply := self._reader.gets()) is not False:
            future = self.pending.popleft()
            if future.done():  # its caller gave up (timeout or cancellation); the reply is dropped
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError(f"connection to redis lost: {exc or 'closed by server'}"))

    def fail(self, exc: Exception) -> None:
        self.lost = exc
        while self.pending:
            future = self.pending.popleft()
            if not future.done():
                future.set_exception(exc)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()


class PipelinedRedis:
    def __init__(self, url: str, *, connect_timeout_s: float, reply_timeout_s: float) -> None:
        self._endpoint = _Endpoint.from_url(url)
        self._connect_timeout_s = connect_timeout_s
        self._reply_timeout_s = reply_timeout_s
        self._protocol: _Protocol | None = None
        self._connecting: asyncio.Lock | None = None

    async def execute(self, *args: Arg) -> Any:
        """Send one command and return its reply (bytes, int, list, None); Redis errors raise."""
        protocol = await self._connected()
        future = self._send(protocol, args)
        try:
            async with asyncio.timeout(self._reply_timeout_s):
                return await future
        except TimeoutError:
            # A reply that never came leaves the connection's order unknowable: start afresh.
            protocol.fail(RedisTimeoutError(f"no reply from redis within {self._reply_timeout_s} s"))
            raise RedisTimeoutError(f"no reply from redis within {self._reply_timeout_s} s") from None

    def script(self, source: str) -> PipelinedScript:
        return PipelinedScript(self, source)

    async def aclose(self) -> None:
        if self._protocol is not None:
            self._protocol.fail(RedisConnectionError("connection closed by giftwheel"))
            self._protocol = None

    def _send(self, protocol: _Protocol, args: Sequence[Arg]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        protocol.pending.append(future)
        assert protocol.transport is not None
        protocol.transport.write(hiredis.pack_command(tuple(args)))  # type: ignore[arg-type]
        return future

    async def _connected(self) -> _Protocol:
        protocol = self._protocol
        if protocol is not None and protocol.lost is None:
            return protocol
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:  # callers arriving while it connects wait for the same one
            if self._protocol is None or self._protocol.lost is not None:
                self._protocol = await self._open()
            return self._protocol

    async def _open(self) -> _Protocol:
        loop = asyncio.get_running_loop()
        endpoint = self._endpoint
        try:
            async with asyncio.timeout(self._connect_timeout_s):
                if endpoint.path is not None:
                    _, protocol = await loop.create_unix_connection(_Protocol, endpoint.path)
                else:
                    _, protocol = await loop.create_connection(
                        _Protocol, endpoint.host, endpoint.port, ssl=endpoint.ssl
                    )
                try:
                    await asyncio.gather(*(self._send(protocol, c) for c in endpoint.handshake()))
                except BaseException:  # refused AUTH, timeout, cancellation: never leave it half open
                    protocol.fail(RedisConnectionError("redis connection handshake failed"))
                    raise
        except TimeoutError:
            raise RedisTimeoutError(f"redis did not answer within {self._connect_timeout_s} s") from None
        except OSError as exc:
            raise RedisConnectionError(f"cannot connect to redis: {exc}") from exc
        return protocol


class PipelinedScript:
    """A Lua script run by EVALSHA; loaded with EVAL when Redis does not know it (after a restart)."""

    def __init__(self, redis: PipelinedRedis, source: str) -> None:
        self._redis = redis
        self._source = source
        # Redis names scripts by their SHA-1; not a security use.
        self._sha = hashlib.sha1(source.encode(), usedforsecurity=False).hexdigest()

    async def __call__(self, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        try:
            return await self._redis.execute("EVALSHA", self._sha, len(keys), *keys, *args)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # NOSCRIPT means the script did not run, so running it now cannot run it twice.
        return await self._redis.execute("EVAL", self._source, len(keys), *keys, *args)
