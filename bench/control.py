"""Control latency behind a gift backlog: does a hold reach the motor ahead of the queued gifts?

One `giftwheel worker` process, one Redis, the emulated ThingsBoard and an RPC sink for the Pi. A
backlog of ``--events`` gifts is appended at once (faster than the worker drains it); while it
drains, ``--requests`` control requests (hold and resume of motor_02, in turn) are submitted one
after another through ControlClient, and, for comparison, as many with no backlog first. Per
request: submit -> the hold/resume RPC at the device connection, and submit -> outcome back at the
caller, as p50 / p99 / max ms, with the backlog (entries) when each was submitted. At the end every
gift must have reached the sink (a resume last).

Run: ``.venv/bin/python -m bench.control`` (see ``--help``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis

from bench.worker import GATEWAY_TOKEN, MOTORS, gifts, pct, wait_balanced, wait_rounds, workers
from cloud.control.client import ControlClient
from cloud.ingest.queue import GiftQueue
from cloud.stream_backlog import stream_backlog
from devstack.ports import free_port
from devstack.redis_server import RedisServer
from devstack.rpc_sink import RpcSink
from devstack.tb_emulator.harness import EmulatorProcess
from giftwheel.contracts import EVENTS_STREAM
from giftwheel.contracts.control import ControlAction, ControlRequest, new_request_id


@dataclass(frozen=True)
class Row:
    scenario: str
    requests: int
    backlog_median: int
    to_device_ms: list[float]
    to_outcome_ms: list[float]

    def line(self) -> str:
        def spread(values: list[float]) -> str:
            return f"{statistics.median(values):.1f} / {pct(values, 0.99):.1f} / {max(values):.1f}"

        return (
            f"| {self.scenario} | {self.requests} | {self.backlog_median:,} "
            f"| {spread(self.to_device_ms)} | {spread(self.to_outcome_ms)} |"
        )


async def measure(
    redis: Redis, sink: RpcSink, count: int, *, backlog: bool
) -> tuple[list[float], list[float], list[int]]:
    client = ControlClient(redis)
    to_device: list[float] = []
    to_outcome: list[float] = []
    backlogs: list[int] = []
    for n in range(count):
        action = ControlAction.HOLD if n % 2 == 0 else ControlAction.RESUME
        if backlog and await stream_backlog(redis, EVENTS_STREAM) == 0:
            raise RuntimeError("the backlog drained before every request was made: raise --events")
        backlogs.append(await stream_backlog(redis, EVENTS_STREAM))
        request = ControlRequest(
            request_id=new_request_id(), action=action, device="motor_02", by="bench", at_ms=0
        )
        arrivals = len(sink.arrivals)
        started = time.time()
        outcome = await client.submit(request, timeout_s=30)
        to_outcome.append((time.time() - started) * 1000)
        if not outcome.ok:
            raise RuntimeError(f"request not carried out: {outcome}")
        rpc = next(a for a in sink.arrivals[arrivals:] if a.method == action.value)
        to_device.append((rpc.at - started) * 1000)
    return to_device, to_outcome, backlogs


async def run(args: argparse.Namespace, workdir: Path) -> list[Row]:
    rows: list[Row] = []
    with RedisServer() as server:
        redis = Redis.from_url(server.url)
        emulator = EmulatorProcess(mqtt_port=free_port())
        emulator.start()
        sink = RpcSink("127.0.0.1", emulator.mqtt_port, GATEWAY_TOKEN, MOTORS)
        await sink.start()
        try:
            with workers(1, server.url, False, emulator.mqtt_port, 1, workdir):
                await wait_balanced(redis, [EVENTS_STREAM], 1)
                device, outcome, backlogs = await measure(redis, sink, args.requests, backlog=False)
                rows.append(Row("no backlog", args.requests, 0, device, outcome))
                queue = GiftQueue(redis, shards=1, dedupe_ttl_s=3600)
                events = gifts(args.events, f"control-{time.time_ns()}")
                for i in range(0, len(events), 5_000):
                    await queue.append(events[i : i + 5_000])
                device, outcome, backlogs = await measure(redis, sink, args.requests, backlog=True)
                rows.append(
                    Row(
                        "gift backlog draining",
                        args.requests,
                        int(statistics.median(backlogs)),
                        device,
                        outcome,
                    )
                )
                if args.requests % 2:  # the last request was a hold: lift it, so every gift is sent
                    resume = ControlRequest(
                        request_id=new_request_id(),
                        action=ControlAction.RESUME,
                        device="motor_02",
                        by="bench",
                        at_ms=0,
                    )
                    await ControlClient(redis).submit(resume, timeout_s=30)
                await wait_rounds(sink, len(events), timeout_s=600)
        finally:
            await sink.close()
            emulator.kill()
            await redis.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000, help="gifts in the backlog")
    parser.add_argument("--requests", type=int, default=40, help="control requests per scenario")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="giftwheel-bench-") as tmp:
        rows = asyncio.run(run(args, Path(tmp)))
    print(f"\n1 worker, 1 shard; backlog: {args.events:,} gifts appended at once\n")
    print(
        "| scenario | requests | backlog at submit (median) | submit->RPC at device p50 / p99 / max ms "
        "| submit->outcome p50 / p99 / max ms |"
    )
    print("|---|---:|---:|---|---|")
    for row in rows:
        print(row.line())
    sys.stdout.flush()


if __name__ == "__main__":
    main()
