"""Worker benchmark: queued gifts -> worker processes -> emulated ThingsBoard -> a device connection.

Two scenarios, each with 1, 2 and 4 worker processes, on one Redis and on a 3-master Redis Cluster:

* drain: ``--events`` gifts are pre-loaded into the stream shards while ThingsBoard is down (the
  workers own their shards but read nothing, as they do in production while ThingsBoard is
  away); then the emulator starts and the run reports events/s and commands/s from the first RPC
  at a device connection to the last, with coalescing (one command per device per batch).
* live: gifts appended at a fixed ``--rate`` for ``--duration`` s; per event the time from its
  append to the stream until the RPC carrying it arrives at the device connection (p50/p99).

Run: ``.venv/bin/python -m bench.worker`` (see ``--help``). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from redis.asyncio import Redis, RedisCluster

from bench.proc_stats import cpu_seconds
from cloud.ingest.queue import GiftQueue
from cloud.ledger import Ledger
from cloud.worker.leases import lease_key
from devstack.ports import free_port
from devstack.redis_cluster import RedisCluster as ClusterProcesses
from devstack.redis_server import RedisServer
from devstack.rpc_sink import RpcSink
from devstack.stack import shipped_token, shipped_tokens
from devstack.tb_emulator.harness import EmulatorProcess
from giftwheel.contracts import WORKER_GROUP, GiftEvent, event_streams

# Each worker process claims its own dispatcher device from this pool (ThingsBoard: one session each).
DISPATCHER_TOKENS = shipped_tokens("dispatcher")
GATEWAY_TOKEN = shipped_token("gateway")
MOTORS = ["motor_01", "motor_02"]
RULES = "default_device: motor_01\nrules:\n  - {name: roses, match: {gift_name: Rose}, device: motor_02}\n"


@dataclass
class Result:
    backend: str
    scenario: str
    workers: int
    events: int
    commands: int
    seconds: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    # Live runs: p50/p99 of command made (ledger queuedAt, ms clock) -> RPC at the device, and the
    # CPU time the worker processes spent per 1,000 events.
    after_command: str = "-"
    worker_cpu_ms_per_1k: float | None = None
    # Drain runs: CPU of the busiest Redis process (of the cluster's masters) over the drain, in %
    # of one core: near 100 % one Redis is the ceiling, which more masters lift.
    redis_busiest_pct: float | None = None

    def row(self) -> str:
        rate = f"{self.events / self.seconds:,.0f}" if self.seconds else "-"
        cmds = f"{self.commands / self.seconds:,.0f}" if self.seconds else "-"
        lat = (
            f"{self.p50_ms:.1f} / {self.p99_ms:.1f} / {self.max_ms:.1f}"
            if self.p50_ms is not None and self.p99_ms is not None and self.max_ms is not None
            else "-"
        )
        cpu = f"{self.worker_cpu_ms_per_1k:,.0f}" if self.worker_cpu_ms_per_1k is not None else "-"
        redis = f"{self.redis_busiest_pct:.0f}" if self.redis_busiest_pct is not None else "-"
        return (
            f"| {self.backend} | {self.scenario} | {self.workers} | {self.events:,} | {self.commands:,} "
            f"| {rate} | {cmds} | {lat} | {self.after_command} | {cpu} | {redis} |"
        )


def gifts(n: int, run: str) -> list[GiftEvent]:
    now = int(time.time() * 1000)
    return [
        GiftEvent(
            event_id=f"bench:{run}:{i}",
            platform="tiktok",
            user_id=f"user_{i % 5000}",
            gift_name="Rose" if i % 2 else "Heart",
            diamond=1,
            quantity=1,
            timestamp=now,
        )
        for i in range(n)
    ]


@contextmanager
def workers(
    count: int, redis_url: str, cluster: bool, mqtt_port: int, shards: int, workdir: Path
) -> Iterator[list[subprocess.Popen[bytes]]]:
    rules = workdir / "rules.yaml"
    rules.write_text(RULES)
    env = {
        **os.environ,
        "GIFTWHEEL_MODE": "development",
        "GIFTWHEEL_LOG_LEVEL": "WARNING",
        "GIFTWHEEL_REDIS_URL": redis_url,
        "GIFTWHEEL_REDIS__CLUSTER": "true" if cluster else "false",
        "GIFTWHEEL_INGEST__STREAM_SHARDS": str(shards),
        "GIFTWHEEL_WORKER__MQTT__PORT": str(mqtt_port),
        "GIFTWHEEL_WORKER__MQTT__ACCESS_TOKENS": ",".join(DISPATCHER_TOKENS),
        "GIFTWHEEL_WORKER__MQTT__RECONNECT_MAX_S": "0.05",
        "GIFTWHEEL_WORKER__LEASE_TTL_MS": "1500",
        "GIFTWHEEL_WORKER__READ_BLOCK_MS": "100",
    }
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n in range(count):
            with (workdir / f"worker-{n}.log").open("wb") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "giftwheel.cli", "worker", "--rules", str(rules)],
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def wait_balanced(
    redis: Redis | RedisCluster, streams: list[str], count: int, timeout_s: float = 60
) -> None:
    """Every shard owned and shared out evenly among ``count`` live workers."""
    deadline = time.monotonic() + timeout_s
    fair = -(-len(streams) // count)
    while time.monotonic() < deadline:
        owners = [await redis.get(lease_key(s)) for s in streams]
        live = await redis.zcard("giftwheel:workers")
        spread = None not in owners and len(set(owners)) == min(count, len(streams))
        if spread and live == count and max(owners.count(o) for o in set(owners)) <= fair:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError("workers did not share the shards in time")


async def latencies(
    redis: Redis | RedisCluster, streams: list[str], sink: RpcSink, sent_at: dict[str, float]
) -> tuple[list[float], list[float]]:
    """Per event: stream append -> RPC at the device, and the part of it after the command was made."""
    ledger = Ledger(redis, streams=streams, ttl_s=3600)
    first_arrival: dict[str, float] = {}
    for arrival in sink.arrivals:
        first_arrival.setdefault(arrival.command_id, arrival.at)
    total: list[float] = []
    after_command: list[float] = []
    for command_id, at in first_arrival.items():
        command = await ledger.find(command_id)
        if command is None:
            raise RuntimeError(f"{command_id} arrived but is not in the ledger")
        total.extend((at - sent_at[e]) * 1000 for e in command.event_ids if e in sent_at)
        after_command.append(at * 1000 - command.timestamps["queued"])
    return total, after_command


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * q) - 1)]


async def wait_rounds(sink: RpcSink, expected: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while sum(sink.rounds_by_device().values()) < expected:
        if time.monotonic() > deadline:
            got = sum(sink.rounds_by_device().values())
            raise TimeoutError(f"only {got} of {expected} rounds arrived")
        await asyncio.sleep(0.02)


async def run_one(
    backend: str,
    server: RedisServer | ClusterProcesses,
    scenario: str,
    count: int,
    args: argparse.Namespace,
    workdir: Path,
) -> Result:
    redis_url = server.url
    redis_pids = [n.pid for n in server.nodes] if isinstance(server, ClusterProcesses) else [server.pid]
    cluster = backend == "cluster"
    redis: Redis | RedisCluster = RedisCluster.from_url(redis_url) if cluster else Redis.from_url(redis_url)
    await redis.flushall()
    streams = event_streams(args.shards)
    queue = GiftQueue(redis, shards=args.shards, dedupe_ttl_s=3600)
    emulator = EmulatorProcess(mqtt_port=free_port())
    run = f"{backend}-{scenario}-{count}-{time.time_ns()}"
    try:
        with workers(count, redis_url, cluster, emulator.mqtt_port, args.shards, workdir) as procs:
            await wait_balanced(redis, streams, count)
            if scenario == "drain":
                events = gifts(args.events, run)
                for i in range(0, len(events), 2_000):
                    await queue.append(events[i : i + 2_000])
                cpu_before = cpu_seconds(*(p.pid for p in procs))
                redis_before = [cpu_seconds(pid) for pid in redis_pids]
                emulator.start()
                sink = RpcSink("127.0.0.1", emulator.mqtt_port, GATEWAY_TOKEN, MOTORS)
                await sink.start()
                await wait_rounds(sink, len(events), timeout_s=300)
                cpu_ms = (cpu_seconds(*(p.pid for p in procs)) - cpu_before) * 1000
                redis_busiest = max(
                    cpu_seconds(pid) - b for pid, b in zip(redis_pids, redis_before, strict=True)
                )
                distinct = {a.command_id: a.at for a in sink.arrivals}
                span = max(distinct.values()) - min(distinct.values())
                await sink.close()
                result = Result(backend, "drain (pre-loaded)", count, len(events), len(distinct), span)
                result.worker_cpu_ms_per_1k = cpu_ms / len(events) * 1000
                result.redis_busiest_pct = 100 * redis_busiest / span
                return result
            emulator.start()
            sink = RpcSink("127.0.0.1", emulator.mqtt_port, GATEWAY_TOKEN, MOTORS)
            await sink.start()
            await asyncio.sleep(0.5)  # the workers' MQTT connections are up
            events = gifts(int(args.rate * args.duration), run)
            sent_at: dict[str, float] = {}
            cpu_before = cpu_seconds(*(p.pid for p in procs))
            started = time.perf_counter()
            for i, event in enumerate(events):
                due = started + i / args.rate
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                sent_at[event.event_id] = time.time()
                await queue.append([event])
            elapsed = time.perf_counter() - started
            await wait_rounds(sink, len(events), timeout_s=60)
            cpu_ms = (cpu_seconds(*(p.pid for p in procs)) - cpu_before) * 1000
            lat, after = await latencies(redis, streams, sink, sent_at)
            lat.sort()
            await sink.close()
            commands = len({a.command_id for a in sink.arrivals})
            return Result(
                backend,
                f"live {args.rate:,.0f}/s",
                count,
                len(events),
                commands,
                elapsed,
                p50_ms=statistics.median(lat),
                p99_ms=pct(lat, 0.99),
                max_ms=lat[-1],
                after_command=f"{pct(after, 0.5):.0f} / {pct(after, 0.99):.0f}",
                worker_cpu_ms_per_1k=cpu_ms / len(events) * 1000,
            )
    finally:
        emulator.kill()
        pending = 0
        for stream in streams:
            if await redis.exists(stream):
                pending += int((await redis.xpending(stream, WORKER_GROUP))["pending"])
        await redis.aclose()
        if pending:
            print(f"warning: {pending} entries left pending", file=sys.stderr)


async def main(args: argparse.Namespace) -> None:
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="giftwheel-bench-") as tmp:
        workdir = Path(tmp)
        for backend in args.backends:
            with ClusterProcesses(3) if backend == "cluster" else RedisServer() as server:
                for scenario in args.scenarios:
                    for count in args.workers:
                        result = await run_one(backend, server, scenario, count, args, workdir)
                        print(result.row(), file=sys.stderr, flush=True)
                        results.append(result)
    live = f"{args.rate:,.0f}/s for {args.duration} s"
    print(f"\nshards: {args.shards}; drain events: {args.events:,}; live: {live}\n")
    print(
        "| Redis | scenario | workers | events | commands | events/s | commands/s "
        "| append->device p50 / p99 / max ms | command->device p50 / p99 ms | worker CPU ms per 1k events "
        "| busiest Redis, % of a core |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---|---|---:|---:|")
    for result in results:
        print(result.row())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backends", nargs="+", choices=["single", "cluster"], default=["single", "cluster"])
    parser.add_argument("--scenarios", nargs="+", choices=["drain", "live"], default=["drain", "live"])
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--shards", type=int, default=8, help="stream shards (>= the most workers)")
    parser.add_argument("--events", type=int, default=200_000, help="pre-loaded events for the drain run")
    parser.add_argument("--rate", type=float, default=1_000, help="live events per second")
    parser.add_argument("--duration", type=float, default=10, help="live run length in seconds")
    args = parser.parse_args(argv)
    # A worker holds one dispatcher device's session and owns at least one shard.
    most = min(len(DISPATCHER_TOKENS), args.shards)
    if max(args.workers) > most:
        parser.error(
            f"at most {most} workers: {len(DISPATCHER_TOKENS)} dispatcher tokens, {args.shards} shards"
        )
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
