"""``giftwheel demo``: the whole pipeline on this machine, a burst of gifts, and a ledger that must balance.

Every component is a real process wired by the real protocols (devstack.stack.LocalStack). The
demo sends gifts through POST /v1/events, watches the simulated motors turn, then checks that
each motor turned exactly the rounds its accepted gifts asked for. Exit status 1 if not.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from cloud.ledger import Ledger
from cloud.worker.rules import load_rules
from devstack.gift_plan import Kind, PlannedGift, plan_gifts
from devstack.stack import LocalStack, StackOptions
from giftwheel.contracts import EVENTS_STREAM, GiftEvent
from giftwheel.contracts.motor import Telemetry

console = Console()


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gifts", type=int, default=300, help="how many gifts the burst holds")
    parser.add_argument("--concurrency", type=int, default=16, help="gifts in flight at once")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--time-scale", type=float, default=10.0, help="simulated motor speed-up")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep-running", action="store_true", help="leave the stack up until Ctrl-C")
    parser.add_argument("--workdir", type=Path, help="where logs and step records go (default: temp)")


@dataclass
class Tally:
    sent: int = 0
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)  # eventId -> payload
    duplicates: int = 0
    rejected: int = 0
    failed: int = 0
    posted_ms: dict[str, float] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    sending_s: float = 0.0


async def send(url: str, key: str, plan: list[PlannedGift], concurrency: int, tally: Tally) -> None:
    queue: asyncio.Queue[PlannedGift] = asyncio.Queue()
    for gift in plan:
        queue.put_nowait(gift)
    headers = {"Authorization": f"Bearer {key}"}

    async def sender(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            gift = queue.get_nowait()
            posted = time.time() * 1000
            response = await client.post("/v1/events", json=gift.payload, headers=headers)
            tally.sent += 1
            if response.status_code == 202:
                tally.accepted[gift.event_id] = gift.payload
                tally.posted_ms[gift.event_id] = posted
            elif response.status_code == 200:
                tally.duplicates += 1
            elif response.status_code == 422:
                tally.rejected += 1
            else:
                tally.failed += 1
                console.print(f"[red]{response.status_code}[/] {response.text}")

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await asyncio.gather(*(sender(client) for _ in range(concurrency)))


def expected_rounds(stack: LocalStack, tally: Tally) -> dict[str, int]:
    rules = load_rules(stack.options.rules)
    expected: Counter[str] = Counter({m.name: 0 for m in stack.options.motors})
    for payload in tally.accepted.values():
        route = rules.route(GiftEvent.model_validate(payload))
        expected[route.device] += route.rounds
    return dict(expected)


async def watch(stack: LocalStack, plan: list[PlannedGift], concurrency: int, tally: Tally) -> dict[str, int]:
    progress = Progress(
        TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TextColumn("rounds")
    )
    bars = {m.name: progress.add_task(m.name, total=None) for m in stack.options.motors}
    status = Text()
    sending = asyncio.create_task(send(stack.api.url, stack.options.api_key, plan, concurrency, tally))
    expected: dict[str, int] = {}
    last_change, last_total = time.monotonic(), -1.0
    with Live(Group(status, progress), console=console, refresh_per_second=8):
        while True:
            await asyncio.sleep(0.25)
            turned = {m.name: stack.rounds_turned(m) for m in stack.options.motors}
            if sending.done():
                sending.result()
                expected = expected or expected_rounds(stack, tally)
            else:
                tally.sending_s = time.monotonic() - tally.started
            for motor, task in bars.items():
                progress.update(task, completed=int(turned[motor]), total=expected.get(motor))
            rate = tally.sent / max(tally.sending_s, 1e-9)
            status.plain = (
                f"sent {tally.sent}/{len(plan)}  accepted {len(tally.accepted)}  "
                f"duplicates {tally.duplicates}  rejected {tally.rejected}  {rate:,.0f} events/s"
            )
            total = sum(turned.values())
            if total != last_total:
                last_change, last_total = time.monotonic(), total
            if expected and all(turned[m] >= expected[m] for m in expected):
                await asyncio.sleep(1.0)  # a double turn would show up now
                return expected
            if time.monotonic() - last_change > 30:
                console.print("[red]no motor progress for 30 s: giving up the wait[/]")
                return expected or expected_rounds(stack, tally)


async def latencies(stack: LocalStack, tally: Tally) -> dict[str, list[float]]:
    """Per accepted event: ms from its POST to its command reaching the edge, its first step and its end.

    A motor runs its commands one after another, so "first step" and "done" include the time a
    command waits behind earlier gifts for the same motor; "at the edge" is the pipeline alone.
    """
    redis = Redis.from_url(stack.cloud_redis.url)
    try:
        ledger = Ledger(redis, streams=[EVENTS_STREAM], ttl_s=3600)
        commands = await ledger.decisions(EVENTS_STREAM, list(tally.accepted))
    finally:
        await redis.aclose()
    marks: dict[str, dict[str, float]] = defaultdict(dict)
    for motor in stack.options.motors:
        for group in stack.tb.timeseries(motor.name):
            values = group["values"]
            command = values.get(Telemetry.COMMAND_ID)
            for key in (Telemetry.RECEIVED_TS, Telemetry.STARTED_TS, Telemetry.FINISHED_TS):
                if command and values.get(key):
                    marks[command][key] = float(values[key])
    result: dict[str, list[float]] = {"at the edge": [], "first step": [], "done": []}
    for event_id, command in commands.items():
        posted = tally.posted_ms[event_id]
        if received := marks[command].get(Telemetry.RECEIVED_TS):
            result["at the edge"].append(received - posted)
        if started := marks[command].get(Telemetry.STARTED_TS):
            result["first step"].append(started - posted)
        if finished := marks[command].get(Telemetry.FINISHED_TS):
            result["done"].append(finished - posted)
    return result


def pct(samples: list[float], q: int) -> str:
    if len(samples) < 2:
        return "-"
    return f"{statistics.quantiles(samples, n=100, method='inclusive')[q - 1]:,.0f} ms"


def report(
    stack: LocalStack,
    plan: list[PlannedGift],
    tally: Tally,
    expected: dict[str, int],
    lat: dict[str, list[float]],
) -> bool:
    kinds = Counter(gift.kind for gift in plan)
    events = Table(title="events", show_header=False)
    events.add_row(
        "sent",
        f"{tally.sent}  ({kinds[Kind.NEW]} new, {kinds[Kind.REPLAY]} replays, {kinds[Kind.INVALID]} invalid)",
    )
    events.add_row("accepted", str(len(tally.accepted)))
    events.add_row("duplicates", str(tally.duplicates))
    events.add_row("rejected", str(tally.rejected))
    events.add_row("failed", str(tally.failed))
    motors = Table(title="rounds per motor")
    for column in ("motor", "expected", "turned", ""):
        motors.add_column(column)
    balanced = (
        tally.failed == 0 and tally.duplicates == kinds[Kind.REPLAY] and tally.rejected == kinds[Kind.INVALID]
    )
    for motor in stack.options.motors:
        turned = stack.rounds_turned(motor)
        ok = turned == expected.get(motor.name, 0)
        balanced &= ok
        motors.add_row(
            motor.name,
            str(expected.get(motor.name, 0)),
            f"{turned:g}",
            "[green]ok" if ok else "[red]MISMATCH",
        )
    timing = Table(title="latency from POST")
    for column in ("to", "p50", "p99", "events"):
        timing.add_column(column)
    for name, samples in lat.items():
        timing.add_row(name, pct(samples, 50), pct(samples, 99), str(len(samples)))
    console.print(events, motors, timing)
    console.print("[bold green]ledger balances[/]" if balanced else "[bold red]ledger does NOT balance[/]")
    return balanced


def run(args: argparse.Namespace) -> int:
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="giftwheel-demo-"))
    options = StackOptions(workers=args.workers, time_scale=args.time_scale)
    console.print(f"starting the local stack in {workdir} ...")
    try:
        with LocalStack(workdir, options) as stack:
            console.print(f"overlay: {stack.api.url}/overlay   API key: {options.api_key}")
            console.print(
                f"control room: {stack.api.url}/console   operator: {options.console_user}"
                f"   password: {options.console_password}"
            )
            console.print(f"ThingsBoard emulator: http://127.0.0.1:{stack.tb.http_port}/api/devices")
            plan = plan_gifts(args.gifts, seed=args.seed)
            tally = Tally()
            expected = asyncio.run(watch(stack, plan, args.concurrency, tally))
            balanced = report(stack, plan, tally, expected, asyncio.run(latencies(stack, tally)))
            if args.keep_running:
                console.print("stack running; Ctrl-C stops everything")
                while True:
                    time.sleep(3600)
    except KeyboardInterrupt:
        console.print("stopped")
        return 130
    console.print(f"logs: {stack.logs}")
    return 0 if balanced else 1
