"""The ingest append (GiftQueue.append: dedupe + XADD in one Lua script) through the one pipelined
connection (cloud/pipelined_redis.py) vs redis-py's asyncio client with hiredis (a connection pool).

Run:  .venv/bin/python -m bench.redis_append [--seconds 5] [--concurrency 1 16 64 256] [--batch 1 50]

One process on uvloop, as the API runs; a redis-server with AOF everysec, as production. Each of
``concurrency`` tasks appends ``batch`` events per call, back to back, as that many requests in
flight in one API worker would (wrk drives the API with 64 connections). Per case: events
appended/s, client CPU (this process) per event in microseconds, and call latency p50/p99/max.
redis-py gets a pool as large as the concurrency (the API's default pool is 64 connections).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass

import uvloop
from redis.asyncio import Redis
from redis.utils import HIREDIS_AVAILABLE

from cloud.ingest.queue import GiftQueue
from cloud.pipelined_redis import PipelinedRedis
from devstack.redis_server import RedisServer
from giftwheel.contracts import GiftEvent


@dataclass(frozen=True)
class Row:
    client: str
    concurrency: int
    batch: int
    events_per_s: float
    cpu_us_per_event: float
    p50_ms: float
    p99_ms: float
    max_ms: float

    def line(self) -> str:
        return (
            f"| {self.client} | {self.concurrency} | {self.batch} | {self.events_per_s:,.0f} "
            f"| {self.cpu_us_per_event:.1f} | {self.p50_ms:.2f} | {self.p99_ms:.2f} | {self.max_ms:.2f} |"
        )


def _events(run: str, start: int, count: int) -> list[GiftEvent]:
    return [
        GiftEvent(
            event_id=f"{run}:{start + i}",
            platform="tiktok",
            user_id=f"user_{(start + i) % 5000}",
            gift_name="Rose",
            diamond=1,
            quantity=1,
            timestamp=1_700_000_000_000,
        )
        for i in range(count)
    ]


async def _measure(client: str, url: str, concurrency: int, batch: int, seconds: float, run: str) -> Row:
    redis = Redis.from_url(url, max_connections=max(concurrency, 1))
    pipelined = (
        PipelinedRedis(url, connect_timeout_s=1.0, reply_timeout_s=5.0) if client == "pipelined" else None
    )
    queue = GiftQueue(redis, shards=1, dedupe_ttl_s=600, pipelined=pipelined)
    latencies: list[float] = []
    appended = 0
    stop_at = 0.0

    async def appender(worker: int) -> None:
        nonlocal appended
        n = 0
        while time.perf_counter() < stop_at:
            events = _events(f"{run}:{worker}", n, batch)
            n += batch
            began = time.perf_counter()
            await queue.append(events)
            latencies.append(time.perf_counter() - began)
            appended += batch

    # Warm-up: connections opened, the script loaded, before the clock starts.
    await asyncio.gather(*(queue.append(_events(f"{run}:warm:{i}", 0, batch)) for i in range(concurrency)))
    cpu0, wall0 = time.process_time(), time.perf_counter()
    stop_at = wall0 + seconds
    await asyncio.gather(*(appender(i) for i in range(concurrency)))
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    await redis.aclose()
    if pipelined is not None:
        await pipelined.aclose()
    ms = sorted(x * 1000 for x in latencies)
    p = statistics.quantiles(ms, n=100, method="inclusive")
    return Row(client, concurrency, batch, appended / wall, cpu / appended * 1e6, p[49], p[98], ms[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per case")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--repeat", type=int, default=1, help="rounds of every case (alternating clients)")
    args = parser.parse_args()
    if not HIREDIS_AVAILABLE:
        raise SystemExit("redis-py does not see hiredis: pip install hiredis")
    print("| client | concurrency | batch | events/s | CPU us/event | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|---|---|---|---|")
    with RedisServer(appendonly=True) as server:
        for round_ in range(args.repeat):
            for batch in args.batch:
                for concurrency in args.concurrency:
                    for client in ("pipelined", "redis-py"):
                        run = f"{client}:{round_}:{batch}:{concurrency}:{time.monotonic_ns()}"
                        row = uvloop.run(_measure(client, server.url, concurrency, batch, args.seconds, run))
                        print(row.line(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
