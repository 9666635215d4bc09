"""Ingest benchmark: bare validating endpoint vs POST /v1/events, batch and WebSocket, 1 and 2 workers.

Run:  .venv/bin/python -m bench.ingest [--duration 15] [--workers 1 2] [--repeat 3]
Needs wrk (Debian package `wrk`; ./scripts/setup installs it). Everything runs on this machine:
a redis-server with AOF (appendfsync everysec, the production setting), the API as a real
`giftwheel api` process, and the load generators (wrk for single posts, Python for batch/WS).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import websockets
from redis import Redis

from devstack.api_process import ApiProcess
from devstack.ports import free_port, wait_for_port
from devstack.redis_server import RedisServer

KEY = "bench-key-0123456789abcdef"
WRK_SCRIPT = Path(__file__).with_name("wrk_post_event.lua")


@dataclass
class Row:
    case: str
    workers: int
    events_per_s: float
    p50_ms: float
    p99_ms: float
    failures: int
    unit: str  # what the latency measures


def percentile(samples: list[float], q: int) -> float:
    if not samples:
        return float("nan")
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1] if len(samples) > 1 else samples[0]


@dataclass(frozen=True)
class Load:
    """How hard the load generators push: wrk for single posts, Python clients for batch and WebSocket.
    The defaults suit this 2-core box; a box with more cores needs more of each to load 8 API processes."""

    wrk_threads: int
    connections: int
    batch_clients: int
    ws_connections: int
    generators: int  # processes for the batch and WebSocket clients, each with the counts above


def run_wrk(url: str, duration_s: int, load: Load, key: str, run_id: str) -> tuple[float, float, float, int]:
    env = {**os.environ, "GIFTWHEEL_BENCH_KEY": key, "GIFTWHEEL_BENCH_RUN": run_id}
    out = subprocess.run(
        ["wrk", f"-t{load.wrk_threads}", f"-c{load.connections}", f"-d{duration_s}s",
         "-s", str(WRK_SCRIPT), f"{url}/v1/events"],
        capture_output=True, text=True, env=env, check=True,
    ).stdout  # fmt: skip
    found = re.search(
        r"GIFTWHEEL requests=(\d+) non2xx=(\d+) errors=(\d+) p50_us=(\d+) p99_us=(\d+) duration_us=(\d+)", out
    )
    if not found:
        raise RuntimeError(f"unexpected wrk output:\n{out}")
    requests, non2xx, errors, p50, p99, duration = map(int, found.groups())
    return (requests - non2xx) / (duration / 1e6), p50 / 1000, p99 / 1000, non2xx + errors


@contextmanager
def bare_server(workers: int) -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.bare_app:create", "--factory", "--port", str(port),
         "--workers", str(workers), "--loop", "uvloop", "--http", "httptools",
         "--log-level", "warning", "--no-access-log"],
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, 20)
        time.sleep(0.5 * workers)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def events(run_id: str, start: int, count: int) -> list[dict[str, object]]:
    now = int(time.time() * 1000)
    return [
        {"eventId": f"{run_id}:{n}", "event": "gift", "platform": "tiktok", "userId": f"user_{n % 5000}",
         "giftName": "Rose", "diamond": 1, "quantity": 1, "timestamp": now}
        for n in range(start, start + count)
    ]  # fmt: skip


async def batch_load(
    url: str, duration_s: int, concurrency: int, size: int, run_id: str
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    failures = 0
    stored = 0
    counter = 0
    deadline = time.monotonic() + duration_s
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}

    async def client(client: httpx.AsyncClient) -> None:
        nonlocal failures, stored, counter
        while time.monotonic() < deadline:
            start = counter
            counter += size
            body = orjson.dumps({"events": events(run_id, start, size)})
            began = time.perf_counter()
            response = await client.post("/v1/events/batch", content=body, headers=headers)
            latencies.append((time.perf_counter() - began) * 1000)
            if response.status_code != 200:
                failures += size
                continue
            result = orjson.loads(response.content)
            stored += result["accepted"]
            failures += result["rejected"]

    began = time.perf_counter()
    async with httpx.AsyncClient(
        base_url=url, timeout=30, limits=httpx.Limits(max_connections=concurrency)
    ) as c:
        await asyncio.gather(*(client(c) for _ in range(concurrency)))
    return stored / (time.perf_counter() - began), latencies, failures


async def ws_load(
    url: str, duration_s: int, connections: int, frame: int, inflight: int, run_id: str
) -> tuple[float, list[float], int]:
    latencies: list[float] = []
    stored = 0
    failures = 0
    deadline = time.monotonic() + duration_s
    headers = {"Authorization": f"Bearer {KEY}"}
    ws_url = url.replace("http://", "ws://") + "/v1/ingest"

    async def connection(index: int) -> None:
        nonlocal stored, failures
        slots = asyncio.Semaphore(inflight)
        sent_at: dict[int, float] = {}
        async with websockets.connect(ws_url, additional_headers=headers, max_size=None) as ws:

            async def sender() -> None:
                seq = 0
                while time.monotonic() < deadline:
                    await slots.acquire()
                    sent_at[seq] = time.perf_counter()
                    await ws.send(orjson.dumps(events(f"{run_id}:{index}", seq, frame)).decode())
                    seq += frame

            async def receiver() -> None:
                nonlocal stored, failures
                while True:
                    acks = orjson.loads(await ws.recv())
                    latencies.append((time.perf_counter() - sent_at.pop(acks[0]["seq"])) * 1000)
                    ok = sum(1 for ack in acks if "eventId" in ack and not ack["duplicate"])
                    stored += ok
                    failures += len(acks) - ok
                    slots.release()
                    if time.monotonic() >= deadline and not sent_at:
                        return

            await asyncio.gather(sender(), receiver())

    began = time.perf_counter()
    await asyncio.gather(*(connection(i) for i in range(connections)))
    return stored / (time.perf_counter() - began), latencies, failures


BATCH_SIZE = 1_000
FRAME_EVENTS = 500
FRAMES_IN_FLIGHT = 4


def generate(
    kind: str, url: str, duration_s: int, clients: int, run_id: str
) -> tuple[float, list[float], int]:
    """One generator process's batch or WebSocket load: (events/s stored, latencies ms, failures)."""
    if kind == "batch":
        return asyncio.run(batch_load(url, duration_s, clients, BATCH_SIZE, run_id))
    return asyncio.run(ws_load(url, duration_s, clients, FRAME_EVENTS, FRAMES_IN_FLIGHT, run_id))


def generated(
    kind: str, url: str, duration_s: int, clients: int, processes: int, run_id: str
) -> tuple[float, list[float], int]:
    """The load from `processes` generator processes at once (one Python process tops out before
    several API processes do), their rates and failures summed."""
    if processes == 1:
        return generate(kind, url, duration_s, clients, run_id)
    with ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn")) as pool:
        parts = list(
            pool.map(
                generate,
                [kind] * processes,
                [url] * processes,
                [duration_s] * processes,
                [clients] * processes,
                [f"{run_id}-{i}" for i in range(processes)],
            )
        )
    return sum(p[0] for p in parts), [ms for p in parts for ms in p[1]], sum(p[2] for p in parts)


def median_row(runs: list[Row]) -> Row:
    """The run with the median rate: on a shared box single runs swing, alternated repeats don't."""
    return sorted(runs, key=lambda r: r.events_per_s)[len(runs) // 2]


def bench(duration_s: int, worker_counts: list[int], load: Load, repeat: int) -> list[Row]:
    rows: list[Row] = []
    with RedisServer(appendonly=True) as redis_server:
        redis = Redis.from_url(redis_server.url)
        env = {
            "GIFTWHEEL_REDIS_URL": redis_server.url,
            "GIFTWHEEL_API_KEYS": KEY,
            "GIFTWHEEL_INGEST__BACKLOG_MAX": str(10**9),
            "GIFTWHEEL_LOG_LEVEL": "WARNING",
        }
        for workers in worker_counts:
            bare_runs: list[Row] = []
            single_runs: list[Row] = []
            for attempt in range(repeat):  # bare and ingest alternate, so drift hits both alike
                with bare_server(workers) as url:
                    run_wrk(url, 2, load, "", "warmup")
                    rate, p50, p99, fails = run_wrk(url, duration_s, load, "", "bare")
                    bare_runs.append(
                        Row("bare validating endpoint", workers, rate, p50, p99, fails, "request")
                    )
                with ApiProcess(env, workers=workers) as api:
                    time.sleep(0.5 * workers)
                    run_wrk(api.url, 2, load, KEY, f"warm{workers}-{attempt}")
                    redis.flushall()
                    rate, p50, p99, fails = run_wrk(
                        api.url, duration_s, load, KEY, f"single{workers}-{attempt}"
                    )
                    stored = redis.xlen("giftwheel:events")
                    single_runs.append(Row("POST /v1/events", workers, rate, p50, p99, fails, "request"))
                    print(f"  single: {stored} entries stored, {rate:,.0f}/s", file=sys.stderr)
                    redis.flushall()
                    if attempt < repeat - 1:
                        continue
                    rows += [median_row(bare_runs), median_row(single_runs)]
                    rate, lat, fails = generated(
                        "batch", api.url, duration_s, load.batch_clients, load.generators, f"batch{workers}"
                    )
                    rows.append(Row("POST /v1/events/batch (1000/req)", workers, rate, percentile(lat, 50),
                                    percentile(lat, 99), fails, "request of 1000"))  # fmt: skip
                    redis.flushall()
                    rate, lat, fails = generated(
                        "ws", api.url, duration_s, load.ws_connections, load.generators, f"ws{workers}"
                    )
                    rows.append(Row("WebSocket /v1/ingest (500/frame)", workers, rate, percentile(lat, 50),
                                    percentile(lat, 99), fails, "frame of 500"))  # fmt: skip
                    redis.flushall()
        redis.close()
    return rows


def table(rows: list[Row]) -> str:
    bare = {r.workers: r.events_per_s for r in rows if r.case.startswith("bare")}
    lines = [
        "| case | API workers | events/s | p50 ms | p99 ms | latency of | failed | vs bare |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = (
            f"{r.events_per_s / bare[r.workers]:.0%}"
            if r.case.startswith("POST /v1/events") and not r.case.endswith(")")
            else ""
        )
        lines.append(
            f"| {r.case} | {r.workers} | {r.events_per_s:,.0f} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | "
            f"{r.unit} | {r.failures} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=int, default=15, help="seconds per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--connections", type=int, default=64, help="wrk connections")
    parser.add_argument("--wrk-threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--batch-clients", type=int, default=8, help="concurrent batch requests")
    parser.add_argument("--ws-connections", type=int, default=4, help="WebSocket ingest connections")
    parser.add_argument(
        "--generators", type=int, default=1, help="processes running the batch and WebSocket clients"
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="alternate bare and single-POST runs N times; report medians"
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench.ingest needs wrk: run ./scripts/setup (or apt-get install wrk)", file=sys.stderr)
        return 2
    load = Load(args.wrk_threads, args.connections, args.batch_clients, args.ws_connections, args.generators)
    print(table(bench(args.duration, args.workers, load, args.repeat)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
