"""The ingest hot path's pipelined Redis connection, against real redis-server processes."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cloud.pipelined_redis import PipelinedRedis
from devstack.ports import free_port
from devstack.redis_server import RedisServer


def pipelined(url: str, *, reply_timeout_s: float = 2.0) -> PipelinedRedis:
    return PipelinedRedis(url, connect_timeout_s=1.0, reply_timeout_s=reply_timeout_s)


async def test_concurrent_calls_share_one_connection_and_each_gets_its_own_reply(
    redis_server: RedisServer, redis: Redis
) -> None:
    conn = pipelined(redis_server.url)
    replies = await asyncio.gather(*(conn.execute("ECHO", f"n{n}") for n in range(500)))
    assert replies == [f"n{n}".encode() for n in range(500)]
    clients = await redis.client_list()
    assert sum(1 for c in clients if c["cmd"] == "echo") == 1  # all 500 over one connection
    await conn.aclose()


async def test_an_error_reply_fails_only_its_own_call(redis_server: RedisServer) -> None:
    conn = pipelined(redis_server.url)
    results = await asyncio.gather(
        conn.execute("SET", "k", "v"),
        conn.execute("INCR", "k"),  # not an integer
        conn.execute("GET", "k"),
        return_exceptions=True,
    )
    assert results[0] == b"OK"
    assert isinstance(results[1], ResponseError)
    assert results[2] == b"v"
    await conn.aclose()


async def test_script_is_reloaded_when_redis_forgot_it(redis_server: RedisServer, redis: Redis) -> None:
    conn = pipelined(redis_server.url)
    script = conn.script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert await script(["counter"], [2]) == 2
    await redis.script_flush()  # what a Redis restart does to the script cache
    assert await script(["counter"], [3]) == 5  # ran exactly once more
    assert await redis.get("counter") == "5"
    await conn.aclose()


async def test_password_and_database_from_the_url() -> None:
    with RedisServer(extra_args=("--requirepass", "s3cret")) as server:
        conn = pipelined(f"redis://:s3cret@127.0.0.1:{server.port}/3")
        assert await conn.execute("SET", "where", "db3") == b"OK"
        check = Redis(host="127.0.0.1", port=server.port, password="s3cret", db=3)
        assert await check.get("where") == b"db3"
        await check.aclose()
        await conn.aclose()

        wrong = pipelined(f"redis://:nope@127.0.0.1:{server.port}/0")
        with pytest.raises(ResponseError):
            await wrong.execute("PING")
        await wrong.aclose()


async def test_nothing_listening_fails_fast() -> None:
    conn = pipelined(f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(RedisConnectionError):
        await conn.execute("PING")


async def test_killed_redis_fails_calls_under_way_then_reconnects_after_restart() -> None:
    with RedisServer(appendonly=True) as server:
        conn = pipelined(server.url)
        assert await conn.execute("SET", "kept", "1") == b"OK"
        # A blocking call is in flight when the server dies: it must fail, not hang.
        blocked = asyncio.ensure_future(conn.execute("BLPOP", "never", 0))
        await asyncio.sleep(0.1)
        server.kill()
        with pytest.raises(RedisConnectionError):
            await blocked
        with pytest.raises(RedisConnectionError):
            await conn.execute("PING")
        server.restart()
        assert await conn.execute("PING") == b"PONG"
        await conn.aclose()


async def test_a_hung_redis_times_out_and_the_connection_starts_afresh(redis_server: RedisServer) -> None:
    conn = pipelined(redis_server.url, reply_timeout_s=0.3)
    assert await conn.execute("PING") == b"PONG"
    assert redis_server.pid is not None
    os.kill(redis_server.pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        results = await asyncio.gather(
            conn.execute("ECHO", "a"), conn.execute("ECHO", "b"), return_exceptions=True
        )
        assert time.monotonic() - began < 2.0
        assert all(isinstance(r, RedisTimeoutError) for r in results), results
    finally:
        os.kill(redis_server.pid, signal.SIGCONT)
    # The late replies to the abandoned connection must not be taken for the new calls' replies.
    assert await conn.execute("ECHO", "c") == b"c"
    await conn.aclose()
