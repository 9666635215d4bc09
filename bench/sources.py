"""Sources benchmark: how fast gifts go from a feed payload to acked-in-the-stream.

Run:  .venv/bin/python -m bench.sources [--events 200000] [--ack-events 100000]

1. adapt + count: TikFinity frames (JSON text) and TikTokLive ``GiftEvent.to_dict()`` payloads
   through the adapter and the streak tracker, in process (CPU only): frames/s.
2. ingest client: counted gifts submitted to ``IngestClient`` and acked by a real ``giftwheel
   api`` process (1 worker) on a real redis-server (AOF everysec), all on this machine: events/s
   from first submit to last ack of a burst; then one gift at a time on the idle connection,
   submit->ack latency p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from prometheus_client import CollectorRegistry

from cloud.sources.adapters import frame_from_connector, frame_from_tiktoklive
from cloud.sources.ingest_client import IngestClient
from cloud.sources.metrics import SourceMetrics
from cloud.sources.settings import SourceSettings, StreakSettings
from cloud.sources.streaks import Observation, StreakTracker
from devstack.api_process import ApiProcess
from devstack.redis_server import RedisServer
from giftwheel.clock import SystemClock
from giftwheel.contracts import GiftEvent

KEY = "bench-key-0123456789abcdef"


def _frames(count: int, now_ms: int) -> list[dict[str, Any]]:
    """TikTokLive-shaped payloads: streaks of 1..20 Roses by 500 viewers, with their ends."""
    payloads: list[dict[str, Any]] = []
    msg, group = 0, 0
    while len(payloads) < count:
        group += 1
        length = 1 + group % 20
        steps = [*range(1, length + 1), length]  # each combo step, then the closing message
        for index, repeat_count in enumerate(steps):
            msg += 1
            payloads.append(
                {
                    "common": {"msgId": str(7_301_000_000 + msg), "createTime": str(now_ms)},
                    "giftId": "5655",
                    "repeatCount": repeat_count,
                    "repeatEnd": int(index == len(steps) - 1),
                    "groupId": str(1_700_000_000_000 + group),
                    "user": {"id": str(6_900_000_000 + group % 500), "displayId": f"viewer{group % 500}"},
                    "gift": {"id": "5655", "name": "Rose", "type": 1, "diamondCount": 1},
                }
            )
    return payloads[:count]


def _connector(payload: dict[str, Any]) -> str:
    data = {
        "giftId": 5655,
        "giftName": "Rose",
        "giftType": 1,
        "diamondCount": 1,
        "repeatCount": payload["repeatCount"],
        "repeatEnd": bool(payload["repeatEnd"]),
        "groupId": payload["groupId"],
        "userId": payload["user"]["id"],
        "uniqueId": payload["user"]["displayId"],
        "msgId": payload["common"]["msgId"],
        "createTime": payload["common"]["createTime"],
    }
    return orjson.dumps({"event": "gift", "data": data}).decode()


def bench_adapt(count: int) -> list[tuple[str, float, int]]:
    now_ms = int(time.time() * 1000)
    payloads = _frames(count, now_ms)
    texts = [_connector(p) for p in payloads]

    def direct(tracker: StreakTracker) -> list[Observation]:
        return [tracker.observe(frame_from_tiktoklive(p)) for p in payloads]

    def bridged(tracker: StreakTracker) -> list[Observation]:
        return [tracker.observe(frame_from_connector(orjson.loads(x)["data"])) for x in texts]

    rows = []
    for name, run in (("tiktoklive dict", direct), ("tikfinity frame", bridged)):
        tracker = StreakTracker(SystemClock(), StreakSettings())
        started = time.perf_counter()
        observations = run(tracker)
        elapsed = time.perf_counter() - started
        counted = sum(len(o.counted) for o in observations)
        rows.append((name, count / elapsed, counted))
    return rows


async def bench_ack(count: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp, RedisServer(appendonly=True) as redis:
        env = {"GIFTWHEEL_REDIS_URL": redis.url, "GIFTWHEEL_API_KEYS": KEY}
        with ApiProcess(env, log_dir=Path(tmp)) as api:
            settings = SourceSettings(api_url=api.url, api_key=KEY)
            ingest = IngestClient(settings, SourceMetrics("bench", "bench", CollectorRegistry()))
            task = asyncio.create_task(ingest.run())
            now_ms = int(time.time() * 1000)
            events = [
                GiftEvent(
                    event_id=f"bench:{n}",
                    platform="tiktok",
                    user_id=f"u{n % 500}",
                    gift_name="Rose",
                    diamond=1,
                    quantity=1,
                    timestamp=now_ms,
                )
                for n in range(count)
            ]
            started = time.perf_counter()
            for event in events:
                ingest.submit(event)
            assert await ingest.drain(120)
            elapsed = time.perf_counter() - started
            # Latency: one gift at a time on an idle connection, submit to ack.
            latencies: list[float] = []
            for n in range(300):
                t0 = time.perf_counter()
                ingest.submit(events[0].model_copy(update={"event_id": f"bench:lat:{n}"}))
                assert await ingest.drain(10)
                latencies.append((time.perf_counter() - t0) * 1000)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    quantiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return count / elapsed, quantiles[49], quantiles[98]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--ack-events", type=int, default=100_000)
    args = parser.parse_args()
    print("| case | frames/s | gifts counted |")
    print("|---|---|---|")
    for name, rate, counted in bench_adapt(args.events):
        print(f"| adapt + streaks, {name} | {rate:,.0f} | {counted:,} |")
    rate, p50, p99 = asyncio.run(bench_ack(args.ack_events))
    print()
    print("| case | burst events/s | single gift submit->ack p50 ms | p99 ms |")
    print("|---|---|---|---|")
    print(f"| IngestClient -> giftwheel api (1 worker) -> Redis AOF | {rate:,.0f} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
