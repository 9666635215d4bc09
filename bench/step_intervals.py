"""Step interval distribution of one motor controller on the real clock, under CPU load and Redis stalls.

Run:  .venv/bin/python -m bench.step_intervals [--rate 3200] [--rounds 3] [--scenarios quiet,load,...]

What runs: a real redis-server with AOF (appendfsync always, the edge's recommended setting), the
command ledger on it, and one MotorController with the simulated driver on the real monotonic clock
(the pure-Python step path: the simulator and backends without hardware-timed pulses). The driver
records the monotonic time of every pulse; this script reads those timestamps.

Scenarios:
- quiet: nothing else runs.
- load: two CPU-bound processes on the box (this box has 2 cores).
- one-core: this process and the two CPU-bound processes pinned to the same core.
- stall: the local Redis is made to sleep 10-90 ms (DEBUG SLEEP, as an SD card's fsync can) just
  before every round boundary, where the controller persists the round.

Per scenario: p50 / p99 / minimum interval, the longest gap, the share of intervals below half the
nominal 1/rate, the longest burst (consecutive intervals below half nominal), intervals below the
ramp's minimum 1/max_rate, intervals shorter than the ramp allows after the real interval before
them (`over accel`, 2 us of timestamp tolerance), the mean rate between the ramps, and the CPU of
this process (the motor thread and the stall trigger) while the command ran, in % of one core.
"""

from __future__ import annotations

import argparse
import itertools
import math
import multiprocessing
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis as redis_lib

from devstack.redis_server import RedisServer
from edge.buffer.keys import Keys
from edge.buffer.ledger import CommandLedger
from edge.motor.clock import MonotonicClock
from edge.motor.controller import DEFAULT_LATE_REPLAN_FULL_STEPS, MotionProfile, MotorController
from edge.motor.ramp import shortest_interval_after
from edge.motor.simulated import SimulatedDriver

MICROSTEPPING = 16
PULSES_PER_ROUND = 200 * MICROSTEPPING  # NEMA 17, 200 steps x 1/16 microstepping
STALL_MS = (10, 90)
TIMESTAMP_TOLERANCE_S = 2e-6  # between a pulse and the controller's reading of the clock


def burn() -> None:
    while True:
        pass


@contextmanager
def cpu_load(processes: int, one_core: bool) -> Iterator[None]:
    saved = os.sched_getaffinity(0)
    if one_core:
        os.sched_setaffinity(0, {min(saved)})  # the children inherit it
    burners = [multiprocessing.Process(target=burn, daemon=True) for _ in range(processes)]
    for p in burners:
        p.start()
    try:
        yield
    finally:
        for p in burners:
            p.kill()
            p.join()
        os.sched_setaffinity(0, saved)


def stall_at_round_boundaries(
    url: str, driver: SimulatedDriver, spr: int, stop: threading.Event, stalls: list[float]
) -> None:
    """DEBUG SLEEP on another connection a few pulses before each round ends, once per round."""
    client = redis_lib.Redis.from_url(url)
    rng = random.Random(19)
    stalled_round = 0
    while not stop.is_set():
        total = driver.total_steps
        this_round = total // spr + 1
        if this_round > stalled_round and total % spr >= spr - 40:
            stalled_round = this_round
            seconds = rng.uniform(*STALL_MS) / 1000
            stalls.append(seconds)
            client.execute_command("DEBUG", "SLEEP", f"{seconds:.3f}")  # type: ignore[no-untyped-call]
        time.sleep(0.0005)
    client.close()


@dataclass
class Result:
    scenario: str
    intervals_us: list[float]
    rate_sps: float
    longest_cruise_gap_us: float
    cpu_pct: float
    stalls: int

    def row(self, nominal_us: float, accel: float) -> str:
        d = sorted(self.intervals_us)
        min_us = nominal_us  # the ramp's shortest interval: 1 / max_rate_sps
        half = nominal_us / 2
        burst = longest = 0
        for v in self.intervals_us:
            burst = burst + 1 if v < half else 0
            longest = max(longest, burst)
        below_half = sum(v < half for v in d) / len(d)
        below_min = sum(v < min_us for v in d)
        too_fast = accel_violations(self.intervals_us, 1e6 / nominal_us, accel)
        return (
            f"| {self.scenario} | {len(d)} | {pct(d, 0.5):.0f} | {pct(d, 0.99):.0f} | {d[0]:.1f} | "
            f"{self.longest_cruise_gap_us / 1000:.1f} | {100 * below_half:.2f} % | {longest} | "
            f"{below_min} | {too_fast} | {self.rate_sps:.0f} | {self.cpu_pct:.0f} |"
        )


def accel_violations(intervals_us: list[float], rate: float, accel: float) -> int:
    """Intervals shorter than the ramp allows after the real one before it (that one counted as
    planned when it was late by less than the controller's re-plan threshold)."""
    count = 0
    for a_us, b_us in itertools.pairwise(intervals_us):
        planned = a_us / 1e6 / (1 + MICROSTEPPING * DEFAULT_LATE_REPLAN_FULL_STEPS)
        if b_us / 1e6 + TIMESTAMP_TOLERANCE_S < shortest_interval_after(planned, rate, accel):
            count += 1
    return count


def pct(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def run(scenario: str, server: RedisServer, rate: float, accel: float, rounds: int, run_id: int) -> Result:
    client = redis_lib.Redis.from_url(server.url, decode_responses=True, socket_timeout=5)
    ledger = CommandLedger(
        client, keys=Keys(prefix=f"bench:{run_id}"), dedupe_ttl_s=60, max_queued_rounds=1000
    )
    clock = MonotonicClock()
    driver = SimulatedDriver(clock)
    profile = MotionProfile(PULSES_PER_ROUND, rate, accel, MICROSTEPPING)
    motor = MotorController("m1", driver, ledger, profile, clock, idle_poll_s=0.05)
    stop = threading.Event()
    stalls: list[float] = []
    staller = threading.Thread(
        target=stall_at_round_boundaries, args=(server.url, driver, PULSES_PER_ROUND, stop, stalls)
    )
    loaded = scenario in ("load", "one-core")
    with cpu_load(2 if loaded else 0, one_core=scenario == "one-core"):
        if scenario == "stall":
            staller.start()
        ledger.submit("m1", f"c-{run_id:08x}", rounds, None)
        cpu_before, wall_before = time.process_time(), time.monotonic()
        motor.start()
        deadline = time.monotonic() + 60 + rounds * PULSES_PER_ROUND / rate * 5
        while ledger.status("m1").commands_done < 1:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{scenario}: the command did not finish")
            time.sleep(0.05)
        cpu_pct = 100 * (time.process_time() - cpu_before) / (time.monotonic() - wall_before)
        stop.set()
        if staller.is_alive():
            staller.join()
        motor.close()
    client.close()
    times = [t for t, _ in driver.steps]
    intervals = [(b - a) * 1e6 for a, b in itertools.pairwise(times)]
    ramp_steps = math.ceil(rate * rate / (2 * accel))
    cruise = times[ramp_steps:-ramp_steps]
    if len(cruise) < 2:
        raise ValueError("the move never cruises: raise --rounds or --accel")
    rate_sps = (len(cruise) - 1) / (cruise[-1] - cruise[0])
    longest = max(b - a for a, b in itertools.pairwise(cruise)) * 1e6
    return Result(scenario, intervals, rate_sps, longest, cpu_pct, len(stalls))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=3200.0, help="commanded steps/s (max_rate_sps)")
    parser.add_argument("--accel", type=float, default=6400.0, help="steps/s^2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default="quiet,load,one-core,stall")
    args = parser.parse_args()
    nominal_us = 1e6 / args.rate
    results = []
    with RedisServer(
        appendonly=True, extra_args=("--appendfsync", "always", "--enable-debug-command", "local")
    ) as server:
        for run_id, scenario in enumerate(args.scenarios.split(","), start=1):
            results.append(run(scenario, server, args.rate, args.accel, args.rounds, run_id))
    print(f"step intervals: {args.rounds} rounds x {PULSES_PER_ROUND} pulses at {args.rate:g} steps/s "
          f"(nominal {nominal_us:.0f} us), {args.accel:g} steps/s^2, {os.cpu_count()} cores, pure-Python "
          "step path (simulated driver, real clock)\n")  # fmt: skip
    print("| scenario | intervals | p50 us | p99 us | min us | longest in cruise ms | below half nominal "
          "| longest burst | below ramp min | over accel | cruise rate /s | CPU % |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        print(result.row(nominal_us, args.accel))
    stalls = [r.stalls for r in results if r.scenario == "stall"]
    if stalls:
        print(f"\nstall: {stalls[0]} Redis stalls of {STALL_MS[0]}-{STALL_MS[1]} ms injected")


if __name__ == "__main__":
    main()
