"""``giftwheel bench``: open-loop load through the whole pipeline at several rates.

Per offered rate: accepted events/s, latency percentiles from an event's scheduled POST to the
edge's RPC reply reaching the worker (the command is persisted on the Pi before that reply), to
the command's first step, and to a viewer (plain WebSocket on the API) hearing of the command's
motion (its first motor.progress or motor.done), CPU per component, and errors. Results print as
a Markdown table with each column's worst; ``--plot`` draws the percentiles against the offered
rate. A motor runs its commands in order, so "first step" and "viewer" include the wait behind
earlier gifts once the offered rounds outrun the motors.

Every accepted gift is accounted for: after the load the viewer keeps watching (up to
``--settle`` seconds) until it has seen the done of every command the gifts became, and a gift
whose command it never saw done is counted lost. Locally the edge's own stamps also split each
command's time on the Pi into waiting in the motor's queue (received -> started) and turning
(started -> finished), the two places a first step can be late, and the emulator's rule-engine
queues count the messages that failed, timed out or were given up on (a feedback webhook given up on
is a done report lost upstream: the likely cause of a lost gift).

Locally (default) it starts devstack.stack.LocalStack with motors fast enough that the
simulation is not what limits. Against your own deployment, pass ``--api-url``, ``--api-key``
and ``--redis-url`` (the cloud Redis, read-only use: the command ledger's timestamps); the
first-step column then stays empty, since clients never talk to ThingsBoard.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from redis.asyncio import Redis

from cloud.ledger import SKIP_MARK, Ledger
from devstack.edge_process import SimMotor
from devstack.gift_plan import plan_gifts
from devstack.load import LoadResult, send_paced
from devstack.stack import LocalStack, StackOptions
from devstack.viewer import Viewer
from giftwheel.contracts import EVENTS_STREAM
from giftwheel.contracts.motor import Telemetry

# One pulse per round and a fast clock: the simulated motors are never the bottleneck, so the
# figures describe the pipeline (ingest, queue, worker, ThingsBoard, gateway, edge buffer). 5,000
# steps/s is the most the default GPIO backend is allowed (edge/motor/pins.py); the stack's time
# scale makes it 50 times that on the real clock.
# Full speed within 10 ms: a motor stops within half of the 100-pulse crash bound below, as the edge
# requires (edge.settings).
BENCH_ACCEL = 500_000
BENCH_MOTORS = (
    SimMotor("motor_01", "a4988", {"step": 17, "dir": 27, "enable": 22}, 1, 1, 5_000, BENCH_ACCEL),
    SimMotor("motor_02", "a4988", {"step": 5, "dir": 6, "enable": 13}, 1, 1, 5_000, BENCH_ACCEL),
)
# A bench round is one pulse, so the edge's crash bound (a motor runs at most max_unwritten_rounds
# ahead of its last durable checkpoint, 1 round by default) would stop a bench motor every 2 pulses
# to wait for a Redis write: a cost per round no real wheel pays (one round is 200-3,200 pulses
# there). 100 rounds here are 100 pulses, what a 200-step wheel may turn in half a round.
# The motors take segments of pulses as on a Pi with gpio_backend lgpio, where a C thread plays them:
# timed one by one in Python, 5,400 bench pulses/s were half of the edge's CPU, a cost set by the
# bench's one-pulse rounds, not by the gifts (docs/benchmarks.md, "Edge: CPU per command").
BENCH_EDGE: dict[str, Any] = {"max_unwritten_rounds": 100, "simulation": {"pulse_train": True}}
# The stack's simulated clock runs this many times real time (the motors' ramps are in its seconds).
BENCH_TIME_SCALE = 50.0
TARGET_EVENTS_PER_S = 500  # the target load's upper end, 30k events/min, to be met at 50-150 ms
PERCENTILES = (50, 95, 99)
EDGE_STAMPS = (Telemetry.RECEIVED_TS, Telemetry.STARTED_TS, Telemetry.FINISHED_TS)


@dataclass
class RateResult:
    offered_per_s: float
    accepted_per_s: float
    errors: dict[str, int]
    latencies_ms: dict[str, list[float]]
    cpu_percent: dict[str, float] = field(default_factory=dict)
    # Accepted gifts, the commands they became, and the gifts whose command no viewer saw done.
    gifts: int = 0
    commands: int = 0
    lost: int = 0
    # Per command, on the Pi: waiting in the motor's queue, and turning.
    edge_ms: dict[str, list[float]] = field(default_factory=dict)
    # Locally, the emulator's rule-engine queues over the rate's load and settling (QUEUE_TROUBLE):
    # a feedback webhook given up on is a done report a viewer may never get.
    queue_trouble: dict[str, int] = field(default_factory=dict)


# The emulator's rule-engine queue counters (its /api/stats) the bench reports, summed over queues.
QUEUE_TROUBLE = {"failed": "failed attempts", "timedOutMsgs": "timed out", "skipped": "given up"}


def queue_counters(stack: LocalStack) -> dict[str, int]:
    queues = stack.tb.stats()["ruleEngineQueues"]
    return {label: sum(int(q[key]) for q in queues) for key, label in QUEUE_TROUBLE.items()}


def percentile(samples: list[float], q: int) -> float:
    if len(samples) < 2:
        return samples[0] if samples else float("nan")
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


class EdgeMarks:
    """Collects per-command edge timestamps from the emulator's telemetry while the load runs."""

    def __init__(self, stack: LocalStack) -> None:
        self._stack = stack
        self.marks: dict[str, dict[str, float]] = defaultdict(dict)
        self._since = {m.name: 0 for m in stack.options.motors}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            self.collect()

    def collect(self) -> None:
        for motor in self._since:
            for group in self._stack.tb.timeseries(motor, since_ms=self._since[motor]):
                # Inclusive: several groups can share a millisecond; marks are kept first-seen.
                self._since[motor] = max(self._since[motor], int(group["ts"]))
                values = group["values"]
                if command := values.get(Telemetry.COMMAND_ID):
                    for key in EDGE_STAMPS:
                        if values.get(key):
                            self.marks[command].setdefault(key, float(values[key]))

    @contextmanager
    def running(self) -> Iterator[None]:
        self._thread.start()
        try:
            yield
        finally:
            self._stop.set()
            self._thread.join()
            self.collect()


def component_pids(stack: LocalStack) -> dict[str, list[int]]:
    pids: dict[str, list[int]] = {
        "api": [stack.api.pid or 0],
        "workers": [w.pid or 0 for w in stack.workers],
        "thingsboard emulator": [stack.tb.pid or 0],
        "edge": [stack.edge.pid or 0],
        "redis (cloud+edge)": [stack.cloud_redis.pid or 0, stack.edge_redis.pid or 0],
    }
    return {name: [p for p in found if p] for name, found in pids.items()}


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            for member in [process, *process.children(recursive=True)]:
                times = member.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


async def ledger_marks(redis_url: str, event_ids: list[str]) -> tuple[dict[str, str], dict[str, int]]:
    """eventId -> commandId, and commandId -> when the worker had the edge's reply (delivered)."""
    redis = Redis.from_url(redis_url)
    try:
        ledger = Ledger(redis, streams=[EVENTS_STREAM], ttl_s=3600)
        decisions = {}
        for start in range(0, len(event_ids), 1000):
            decisions.update(await ledger.decisions(EVENTS_STREAM, event_ids[start : start + 1000]))
        commands = sorted({c for c in decisions.values() if not c.startswith(SKIP_MARK)})
        delivered = {}
        for start in range(0, len(commands), 500):
            for command in await ledger.get_many(EVENTS_STREAM, commands[start : start + 500]):
                if command is not None and "delivered" in command.timestamps:
                    delivered[command.command_id] = command.timestamps["delivered"]
        return decisions, delivered
    finally:
        await redis.aclose()


async def watch_until_done(viewer: Viewer, commands: set[str], settle_s: float) -> None:
    """Let the viewer watch until it has seen every command done, or ``settle_s`` passed."""
    for _ in range(max(1, round(settle_s / 0.1))):
        if commands <= viewer.done:
            return
        await asyncio.sleep(0.1)


def edge_times(marks: dict[str, dict[str, float]]) -> dict[str, list[float]]:
    """Per command, from the edge's stamps: waiting in the motor's queue, and turning."""
    waiting, turning = [], []
    for stamps in marks.values():
        received, started, finished = (stamps.get(k) for k in EDGE_STAMPS)
        if received and started:
            waiting.append(started - received)
        if started and finished:
            turning.append(finished - started)
    return {"motor queue": waiting, "turning": turning}


def measure_rate(
    rate: float,
    duration_s: float,
    api_url: str,
    api_key: str,
    redis_url: str,
    stack: LocalStack | None,
    seed: int,
    settle_s: float = 30.0,
) -> RateResult:
    events = [
        g.payload for g in plan_gifts(int(rate * duration_s), seed=seed, replay_ratio=0, invalid_ratio=0)
    ]
    pids = component_pids(stack) if stack else {}
    cpu_before = {name: cpu_seconds(found) for name, found in pids.items()}
    queues_before = queue_counters(stack) if stack else {}
    marks = EdgeMarks(stack) if stack else None
    viewer = Viewer(api_url)

    async def drive() -> tuple[LoadResult, float, dict[str, str], dict[str, int]]:
        watching = asyncio.create_task(viewer.run())
        try:
            load = await send_paced(api_url, api_key, events, rate, retry_for_s=30)
            await asyncio.sleep(2.0)  # let the last commands reach the edge and the viewer
            # CPU is taken over the load and these 2 s, not over the settling below.
            load_elapsed = time.monotonic() - started
            cpu_after = {name: cpu_seconds(found) for name, found in pids.items()}
            cpu.update({n: 100 * (cpu_after[n] - cpu_before[n]) / load_elapsed for n in pids})
            ids = [d.event_id for d in load.with_status(202)]
            decisions, delivered = await ledger_marks(redis_url, ids)
            commands = {c for c in decisions.values() if not c.startswith(SKIP_MARK)}
            await watch_until_done(viewer, commands, settle_s)
            return load, load_elapsed, decisions, delivered
        finally:
            watching.cancel()

    cpu: dict[str, float] = {}
    started = time.monotonic()
    with marks.running() if marks else contextlib.nullcontext():
        load, _elapsed, decisions, delivered = asyncio.run(drive())
    queues_after = queue_counters(stack) if stack else {}
    accepted = load.with_status(202)
    latencies: dict[str, list[float]] = {"edge reply": [], "first step": [], "viewer": []}
    edge_marks = marks.marks if marks else {}
    for delivery in accepted:
        command = decisions.get(delivery.event_id)
        if command is None:
            continue
        if first := edge_marks.get(command, {}).get(Telemetry.STARTED_TS):
            latencies["first step"].append(first - delivery.scheduled_ms)
        if command in delivered:
            latencies["edge reply"].append(delivered[command] - delivery.scheduled_ms)
        if heard := viewer.first_heard_ms.get(command):
            latencies["viewer"].append(heard - delivery.scheduled_ms)
    errors = dict(load.errors)
    if others := len(load.deliveries) - len(accepted):
        errors["not accepted"] = others
    commands = {decisions[d.event_id] for d in accepted if d.event_id in decisions}
    # Skipped gifts (over a rate limit) are decided, never turned: none in this bench's rules.
    lost = sum(1 for d in accepted if decisions.get(d.event_id) not in viewer.done)
    return RateResult(
        rate,
        len(accepted) / load.duration_s,
        errors,
        latencies,
        cpu,
        gifts=len(accepted),
        commands=len(commands),
        lost=lost,
        edge_ms=edge_times(edge_marks),
        queue_trouble={k: queues_after[k] - queues_before[k] for k in queues_after},
    )


def _ms(samples: list[float]) -> str:
    if not samples:
        return "-"
    return " / ".join(f"{percentile(samples, q):,.1f}" for q in PERCENTILES) + f" / {max(samples):,.1f}"


def _per_rate(
    results: list[RateResult], title: str, cells: Callable[[RateResult], dict[str, str]]
) -> list[str]:
    """A titled Markdown table: a row per offered rate, a column per name ``cells`` gives."""
    names = list(cells(results[0]))
    lines = ["", title, "", "| offered/s | " + " | ".join(names) + " |", "|" + "---|" * (len(names) + 1)]
    for r in results:
        row = cells(r)
        lines.append(f"| {r.offered_per_s:,.0f} | " + " | ".join(row[n] for n in names) + " |")
    return lines


def table(results: list[RateResult]) -> str:
    kinds = list(results[0].latencies_ms) if results else []
    quantiles = " / ".join(f"p{q}" for q in PERCENTILES) + " / worst"
    head = ["offered/s", "accepted/s"] + [f"POST->{k} {quantiles} ms" for k in kinds]
    head += ["gifts / commands / lost", "errors"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [f"{r.offered_per_s:,.0f}", f"{r.accepted_per_s:,.0f}"]
        cells += [_ms(r.latencies_ms[kind]) for kind in kinds]
        cells += [f"{r.gifts:,} / {r.commands:,} / {r.lost:,}", str(r.errors or 0)]
        lines.append("| " + " | ".join(cells) + " |")
    if results and any(r.edge_ms for r in results):
        title = f"Per command on the Pi (edge stamps), {quantiles} ms:"
        lines += _per_rate(results, title, lambda r: {n: _ms(v) for n, v in r.edge_ms.items()})
    if results and results[0].queue_trouble:
        title = "ThingsBoard (emulator) rule-engine queues, messages per offered rate:"
        lines += _per_rate(results, title, lambda r: {n: f"{v:,}" for n, v in r.queue_trouble.items()})
    if results and results[0].cpu_percent:
        title = "CPU, % of one core, per offered rate:"
        lines += _per_rate(results, title, lambda r: {n: f"{v:.0f}" for n, v in r.cpu_percent.items()})
    return "\n".join(lines)


def plot(results: list[RateResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = [k for k in results[0].latencies_ms if any(r.latencies_ms[k] for r in results)]
    figure, axes = plt.subplots(1, len(kinds), figsize=(5 * len(kinds), 4), squeeze=False)
    rates = [r.offered_per_s for r in results]
    for axis, kind in zip(axes[0], kinds, strict=True):
        for q in PERCENTILES:
            axis.plot(
                rates, [percentile(r.latencies_ms[kind], q) for r in results], marker="o", label=f"p{q}"
            )
        axis.axvline(TARGET_EVENTS_PER_S, color="grey", linestyle=":", label="target 30k/min")
        axis.set(title=f"POST -> {kind}", xlabel="offered events/s", ylabel="ms", xscale="log", yscale="log")
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rates", type=float, nargs="+", default=[100, 500, 1000, 2000, 5000])
    parser.add_argument("--duration", type=float, default=30, help="seconds each rate is held")
    parser.add_argument("--workers", type=int, default=2, help="workers in the local stack")
    parser.add_argument("--plot", type=Path, help="write a PNG of latency percentiles vs rate")
    parser.add_argument("--api-url", help="your deployment's API (default: a local stack)")
    parser.add_argument("--api-key")
    parser.add_argument("--redis-url", help="your cloud Redis, for the command ledger's timestamps")
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument(
        "--settle", type=float, default=30.0, help="seconds after the load to wait for every command's done"
    )


def run(args: argparse.Namespace) -> int:
    results: list[RateResult] = []
    if args.api_url:
        if not (args.api_key and args.redis_url):
            print("giftwheel bench: --api-url needs --api-key and --redis-url")
            return 2
        for rate in args.rates:
            results.append(
                measure_rate(
                    rate,
                    args.duration,
                    args.api_url,
                    args.api_key,
                    args.redis_url,
                    None,
                    args.seed,
                    args.settle,
                )
            )
            print(table(results[-1:]), flush=True)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="giftwheel-bench-"))
        options = StackOptions(
            workers=args.workers, time_scale=BENCH_TIME_SCALE, motors=BENCH_MOTORS, edge=BENCH_EDGE
        )
        with LocalStack(workdir, options) as stack:
            for index, rate in enumerate(args.rates):
                result = measure_rate(
                    rate,
                    args.duration,
                    stack.api.url,
                    options.api_key,
                    stack.cloud_redis.url,
                    stack,
                    args.seed + index,
                    args.settle,
                )
                results.append(result)
                print(table([result]), flush=True)
        print(f"logs: {workdir / 'logs'}")
    print(table(results))
    if args.plot and results:
        plot(results, args.plot)
        print(f"plot: {args.plot}")
    return 0
