"""Edge benchmark: RPC -> first step latency through the real thingsboard-gateway, and daemon CPU.

Run:  .venv/bin/python -m bench.edge [--rpcs 200] [--rpc-gap-ms 50] [--cpu-seconds 10]
      [--load-rates 50 100 500]

Everything is real except the motor: a redis-server with AOF (appendfsync always, the edge's
recommended setting), the ThingsBoard emulator as a process, and `giftwheel edge` as a process in
simulation mode on the REAL clock, whose simulated driver appends every step (CLOCK_MONOTONIC) to a
file this script reads. Clocks: the daemon and this script share the host's monotonic clock.

Latency per RPC (one at a time, motor idle before each; each sent right after the previous command's
done telemetry arrived, or with ``--rpc-gap-ms N`` after a further pause drawn uniformly from 0..N ms,
so that it meets the rule-engine queue's consumer at any point of its poll interval, as a gift does):
- rpc->step: this script issues the server-side RPC (emulator HTTP side -> rule chain -> MQTT ->
  gateway -> connector -> Redis -> controller) until the first step pulse.
- rpc->publish: this script's call until the emulator wrote the RPC to the gateway's session (the
  request's SENT time in the emulator's RPC record, whole ms): ThingsBoard's share, mostly the Main
  rule-engine queue's poll interval (see rpc_history_ts).
- publish->step: from that write to the first step pulse: the edge's share.
- received->step: the connector's receivedTs (persisted with the command) to the first pulse.
All but rpc->publish include the ramp's first step interval sqrt(2/a) (physics, reported separately).

CPU of the daemon process (all its threads, from /proc): idle, and stepping one motor at 3,200
steps/s on the real clock. With ``--load-rates``, a second daemon runs the end-to-end bench's edge
(devstack/benchmark.py: its two fast simulated motors of one pulse per round, its clock scale and
its edge bound) and takes rotate RPCs of ``--load-rounds`` rounds at each rate (commands/s), spread
over the two motors, for ``--load-seconds``: the end-to-end bench's 500 gifts/s are ~180 commands/s
of ~30 rounds. Printed: the daemon's CPU idle (connected, heartbeats every 60 s: none may fall in
the window) and over each load until its last done arrived, CPU per command and per telemetry
message ThingsBoard received (every command makes a few: queued, started, done), RSS after.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

from devstack.benchmark import BENCH_EDGE, BENCH_MOTORS, BENCH_TIME_SCALE
from devstack.edge_process import GATEWAY_TOKEN, EdgeDaemon, SimMotor, simulated_config
from devstack.redis_server import RedisServer
from devstack.tb_emulator.harness import EmulatorError, EmulatorProcess
from devstack.waiting import wait_until

MAX_RATE_SPS = 3200.0  # one round per second
ACCEL_SPS2 = 6400.0
GAP_SEED = 15  # --rpc-gap-ms draws the same pauses in every run


# A NEMA 17, 200 steps x 1/16 microstepping on an A4988 (the simulated defaults are smaller wheels).
MOTOR = SimMotor(
    "motor_01", "a4988", {"step": 17, "dir": 27, "enable": 22}, 200, 16, MAX_RATE_SPS, ACCEL_SPS2
)


class StepLog:
    """Reads new lines of the simulated driver's step file incrementally."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self.count = 0

    def read_new(self) -> list[float]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as file:
            file.seek(self._offset)
            data = file.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        times = [float(line.split()[0]) for line in data[:end].splitlines()]
        self.count += len(times)
        return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def announced(tb: EmulatorProcess, motor: str) -> bool:
    try:
        return "state" in tb.latest_telemetry(motor)
    except EmulatorError:
        return False


def finished(tb: EmulatorProcess, command_id: str, motor: str = "motor_01") -> bool:
    latest = tb.latest_telemetry(motor)
    return bool(latest.get("commandId") == command_id and latest.get("commandDone") is True)


def rpc_history_ts(tb: EmulatorProcess, motor: str, command_id: str, status: str) -> int:
    """When the emulator's RPC record of ``command_id`` reached ``status`` (epoch ms, whole ms as
    ThingsBoard keeps them). SENT is set as the request is written to the gateway's session, after
    the Main rule-engine queue's consumer polled it: that consumer sleeps pollInterval (25 ms) after
    an empty poll, and the done telemetry this script waits for before each RPC is the last thing it
    took from the motor's partition, so an RPC sent right after it waits most of one interval."""
    for record in reversed(tb.rpc_states(motor)):
        if isinstance(record["params"], dict) and record["params"].get("commandId") == command_id:
            return next(int(h["ts"]) for h in record["history"] if h["status"] == status)
    raise RuntimeError(f"no rpc record for {command_id}")


def measure_latency(tb: EmulatorProcess, steps: StepLog, rpcs: int, gap_ms: float) -> dict[str, list[float]]:
    names = ("rpc_to_step", "rpc_to_publish", "publish_to_step", "received_to_step", "rpc_reply")
    out: dict[str, list[float]] = {f"{name}_ms": [] for name in names}
    gaps = random.Random(GAP_SEED)
    for i in range(rpcs + 5):
        command_id = f"c-{i + 1:08x}"
        time.sleep(gaps.uniform(0, gap_ms / 1000))
        steps.read_new()
        wall_minus_mono = time.time() - time.monotonic()
        sent = time.monotonic()
        status, reply = tb.send_rpc(
            "motor_01", "rotate", {"commandId": command_id, "rounds": 1}, timeout_ms=5000
        )
        replied = time.monotonic()
        if status != 200 or not reply.get("accepted"):
            raise RuntimeError(f"rotate refused: {status} {reply}")
        moved: list[float] = []
        deadline = time.monotonic() + 10
        while len(moved) < MOTOR.pulses_per_round:
            if time.monotonic() > deadline:
                raise TimeoutError("one round")
            moved.extend(steps.read_new())
            time.sleep(0.001)
        wait_until(partial(finished, tb, command_id), 10, 0.001, what="done telemetry")
        received_ms = tb.latest_telemetry("motor_01")["receivedTs"]
        published_ms = rpc_history_ts(tb, "motor_01", command_id, "SENT")
        if i < 5:
            continue  # warm-up
        first_step_ms = (moved[0] + wall_minus_mono) * 1000
        out["rpc_to_step_ms"].append((moved[0] - sent) * 1000)
        out["rpc_to_publish_ms"].append(published_ms - (sent + wall_minus_mono) * 1000)
        out["publish_to_step_ms"].append(first_step_ms - published_ms)
        out["received_to_step_ms"].append(first_step_ms - received_ms)
        out["rpc_reply_ms"].append((replied - sent) * 1000)
    return out


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (all threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_percent(pid: int, seconds: float) -> float:
    """CPU of the daemon process over a window, in % of one core."""
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return 100 * (cpu_seconds(pid) - before) / seconds


def measure_cpu(tb: EmulatorProcess, steps: StepLog, pid: int, seconds: float) -> dict[str, float]:
    time.sleep(2)
    idle = cpu_percent(pid, seconds)
    rounds = int(seconds) + 10
    tb.send_rpc("motor_01", "rotate", {"commandId": "c-ffff0001", "rounds": rounds}, timeout_ms=5000)
    time.sleep(3)  # past the ramp
    steps.read_new()
    start = time.monotonic()
    busy = cpu_percent(pid, seconds)
    rate = len(steps.read_new()) / (time.monotonic() - start)
    tb.send_rpc("motor_01", "stop", {}, timeout_ms=5000)
    return {"idle_cpu_pct": idle, "stepping_cpu_pct": busy, "stepping_rate_sps": rate, "rss_mb": rss_mb(pid)}


def load_cpu(
    tb: EmulatorProcess, pid: int, rate: float, rounds: int, seconds: float, prefix: str
) -> dict[str, float]:
    """Paced rotate RPCs of ``rounds`` at ``rate``/s over the bench motors; the daemon's CPU over the
    load and until every command's done telemetry arrived."""
    motors = [m.name for m in BENCH_MOTORS]
    count = int(rate * seconds)
    messages_before = tb.stats()["telemetry_msgs"]

    def rotate(i: int) -> bool:
        params = {"commandId": f"c-{prefix}{i:08x}", "rounds": rounds}
        status, reply = tb.send_rpc(motors[i % len(motors)], "rotate", params, timeout_ms=10_000)
        return status == 200 and bool(reply.get("accepted"))

    cpu_before = cpu_seconds(pid)
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=32) as pool:
        futures = []
        for i in range(count):
            time.sleep(max(0.0, start + i / rate - time.monotonic()))
            futures.append(pool.submit(rotate, i))
        accepted = sum(f.result() for f in futures)
    last = f"c-{prefix}{count - 1:08x}"
    wait_until(partial(finished, tb, last, motors[(count - 1) % len(motors)]), 60, 0.01, what="last done")
    elapsed = time.monotonic() - start
    cpu_s = cpu_seconds(pid) - cpu_before
    messages = tb.stats()["telemetry_msgs"] - messages_before
    return {
        "rate": rate,
        "commands": accepted,
        "cpu_pct": 100 * cpu_s / elapsed,
        "ms_per_command": 1000 * cpu_s / max(1, accepted),
        "messages_per_command": messages / max(1, accepted),
        "ms_per_message": 1000 * cpu_s / max(1, messages),
        "rss_mb": rss_mb(pid),
    }


@contextmanager
def edge_daemon(
    workdir: Path, motors: tuple[SimMotor, ...], appendfsync: str, **config: Any
) -> Iterator[tuple[EmulatorProcess, EdgeDaemon]]:
    """Redis (AOF), the emulator and `giftwheel edge` on simulated ``motors``, until every motor
    was announced; ``config`` replaces top-level keys of the edge's config."""
    gateway = {"name": "pi-01", "token": GATEWAY_TOKEN, "type": "gateway", "gateway": True}
    with (
        RedisServer(appendonly=True, extra_args=("--appendfsync", appendfsync)) as redis,
        EmulatorProcess([gateway]) as tb,
        EdgeDaemon(
            simulated_config(
                workdir,
                redis.url,
                tb.mqtt_port,
                motors=motors,
                **{"offline_ready_after_s": 30, "heartbeat_interval_s": 60, "log_level": "WARNING", **config},
            ),
            workdir,
        ) as daemon,
    ):
        wait_until(partial(announced, tb, motors[-1].name), 60, what="motors announced")
        assert daemon.pid is not None
        yield tb, daemon


def measure_load(
    workdir: Path, rates: list[float], rounds: int, seconds: float, appendfsync: str
) -> list[dict[str, float]]:
    with edge_daemon(workdir, BENCH_MOTORS, appendfsync, time_scale=BENCH_TIME_SCALE, **BENCH_EDGE) as (
        tb,
        daemon,
    ):
        assert daemon.pid is not None
        time.sleep(2)
        idle = {"rate": 0.0, "commands": 0, "cpu_pct": cpu_percent(daemon.pid, seconds)}
        results = [idle | {"rss_mb": rss_mb(daemon.pid)}]
        for n, rate in enumerate(rates):
            results.append(load_cpu(tb, daemon.pid, rate, rounds, seconds, f"{n + 1:02x}"))
    return results


def print_load(results: list[dict[str, float]], rounds: int, seconds: float) -> None:
    print(f"\n| rotate RPCs/s of {rounds} rounds ({seconds:g} s each) | commands | ", end="")
    print("daemon CPU % of one core | CPU ms per command | telemetry messages per command | ", end="")
    print("CPU ms per message | RSS MB |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        if not r["commands"]:
            print(f"| idle | 0 | {r['cpu_pct']:.2f} | - | - | - | {r['rss_mb']:.0f} |")
            continue
        print(
            f"| {r['rate']:g} | {r['commands']:.0f} | {r['cpu_pct']:.1f} | {r['ms_per_command']:.3f} | "
            f"{r['messages_per_command']:.2f} | {r['ms_per_message']:.3f} | {r['rss_mb']:.0f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rpcs", type=int, default=200)
    parser.add_argument("--cpu-seconds", type=float, default=10.0)
    parser.add_argument(
        "--rpc-gap-ms", type=float, default=0.0, help="latency RPCs: random pause up to this after each done"
    )
    parser.add_argument("--appendfsync", choices=["always", "everysec"], default="always")
    parser.add_argument("--load-rates", type=float, nargs="*", default=[], help="rotate RPCs/s")
    parser.add_argument("--load-rounds", type=int, default=30, help="rounds per rotate RPC")
    parser.add_argument("--load-seconds", type=float, default=10.0)
    parser.add_argument("--skip-latency", action="store_true", help="only the --load-rates part")
    args = parser.parse_args()
    if not args.skip_latency:
        latency_and_cpu(args)
    if args.load_rates:
        workdir = Path(tempfile.mkdtemp(prefix="giftwheel-bench-edge-load-"))
        results = measure_load(
            workdir, args.load_rates, args.load_rounds, args.load_seconds, args.appendfsync
        )
        print_load(results, args.load_rounds, args.load_seconds)


def latency_and_cpu(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="giftwheel-bench-edge-"))
    with edge_daemon(workdir, (MOTOR,), args.appendfsync) as (tb, daemon):
        steps = StepLog(workdir / "steps" / "motor_01.steps")
        latency = measure_latency(tb, steps, args.rpcs, args.rpc_gap_ms)
        assert daemon.pid is not None
        cpu = measure_cpu(tb, steps, daemon.pid, args.cpu_seconds)
        code = daemon.stop()
    first_interval_ms = math.sqrt(2 / ACCEL_SPS2) * 1000
    print(f"edge bench: {args.rpcs} sequential rotate RPCs (1 round each), {os.cpu_count()} cores,")
    gap = f"and a random pause of 0-{args.rpc_gap_ms:g} ms" if args.rpc_gap_ms else "at once"
    print(f"each after the previous command's done {gap},")
    print(f"local Redis appendfsync {args.appendfsync}")
    print(f"config: {MOTOR.pulses_per_round} pulses/round, {MAX_RATE_SPS:g} steps/s max, ", end="")
    print(f"{ACCEL_SPS2:g} steps/s^2")
    print(f"ramp's first step interval sqrt(2/a) = {first_interval_ms:.1f} ms (included below)\n")
    print("| measure | p50 ms | p99 ms | max ms |")
    print("|---|---|---|---|")
    for name, values in latency.items():
        print(f"| {name} | {statistics.median(values):.1f} | {pct(values, 0.99):.1f} | {max(values):.1f} |")
    print()
    print("| daemon (gateway + connector + controller, simulated driver) | value |")
    print("|---|---|")
    print(f"| CPU idle (% of one core, {args.cpu_seconds:g} s) | {cpu['idle_cpu_pct']:.1f} |")
    print(f"| CPU stepping at {MAX_RATE_SPS:g} steps/s (% of one core) | {cpu['stepping_cpu_pct']:.1f} |")
    print(f"| achieved step rate while measuring | {cpu['stepping_rate_sps']:.0f} steps/s |")
    print(f"| RSS | {cpu['rss_mb']:.0f} MB |")
    print(f"\ndaemon exit code after SIGTERM: {code}")


if __name__ == "__main__":
    main()
