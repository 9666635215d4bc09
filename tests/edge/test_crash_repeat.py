"""kill -9 of the edge daemon and its Redis at once, mid-rotation, then both restarted: the motor
repeats at most a checkpoint's worth of pulses (a fraction of a round), never a round, never less."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import redis as redis_lib

from devstack.edge_process import EdgeDaemon, recorded_steps, simulated_config
from devstack.ports import free_port
from devstack.redis_server import RedisServer
from devstack.waiting import wait_until
from edge.buffer.ledger import CommandLedger
from edge.motor.checkpoint import CheckpointPolicy

pytestmark = pytest.mark.slow

SPR = 200  # motor_01 pulses per round in the harness config
FRACTION = 0.1  # a checkpoint every 20 pulses
ROUNDS = 5
SPEED_RPM = 300.0  # 1,000 pulses/s: a 20-pulse checkpoint interval is 20 ms, far above one write


def ledger_on(redis: RedisServer) -> tuple[redis_lib.Redis, CommandLedger]:
    client = redis_lib.Redis.from_url(redis.url, decode_responses=True, socket_timeout=5)
    return client, CommandLedger(client, dedupe_ttl_s=60, max_queued_rounds=1000)


def trial(tmp_path: Path, redis: RedisServer, config: dict[str, object], n: int, kill_after: int) -> int:
    """One command killed after ``kill_after`` pulses, both processes at once; pulses repeated."""
    turned_before = recorded_steps(tmp_path, "motor_01")
    client, ledger = ledger_on(redis)
    ledger.submit("motor_01", f"c-0000d{n:03x}", ROUNDS, SPEED_RPM)
    client.close()
    with EdgeDaemon(config, tmp_path) as daemon:
        wait_until(
            lambda: recorded_steps(tmp_path, "motor_01") >= turned_before + kill_after, 30, what="turning"
        )
        daemon.kill()
        redis.kill()
    redis.start()
    client, ledger = ledger_on(redis)
    with EdgeDaemon(config, tmp_path):
        wait_until(lambda: ledger.status("motor_01").commands_done == n + 1, 30, what="resumed and finished")
    client.close()
    return recorded_steps(tmp_path, "motor_01") - turned_before - ROUNDS * SPR


def test_kill_both_at_once_repeats_a_sliver_not_a_round(tmp_path: Path) -> None:
    every = CheckpointPolicy(fraction_of_round=FRACTION).every_pulses(SPR)
    rng = random.Random(19)
    redis = RedisServer(
        appendonly=True, data_dir=tmp_path / "redis", extra_args=("--appendfsync", "always")
    ).start()
    config = simulated_config(
        tmp_path, redis.url, free_port(), checkpoint_fraction_of_round=FRACTION, log_level="WARNING"
    )
    try:
        repeats = [trial(tmp_path, redis, config, n, rng.randint(SPR, (ROUNDS - 1) * SPR)) for n in range(3)]
    finally:
        redis.close()
    # Never less than commanded; at most the pulses since the last written checkpoint: one interval,
    # plus one in flight when the kill came during its write.
    assert all(0 <= r <= 2 * every for r in repeats), f"pulses repeated per trial: {repeats}"
