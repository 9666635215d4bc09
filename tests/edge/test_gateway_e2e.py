"""The daemon through the REAL thingsboard-gateway against the ThingsBoard emulator: RPCs, dedupe,
kill -9 and resume, a ThingsBoard outage, a local Redis restart."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib

from devstack.edge_process import DEFAULT_MOTORS, GATEWAY_TOKEN, EdgeDaemon, recorded_steps, simulated_config
from devstack.redis_server import RedisServer
from devstack.tb_emulator.harness import EmulatorError, EmulatorProcess
from devstack.waiting import wait_until
from edge.buffer.ledger import CommandLedger
from edge.motor.checkpoint import CheckpointPolicy

pytestmark = pytest.mark.slow

SPR = 200  # motor_01 pulses per round in the harness config
wait_for = partial(wait_until, timeout_s=30.0)


@pytest.fixture
def emulator() -> Iterator[EmulatorProcess]:
    gateway = {"name": "pi-01", "token": GATEWAY_TOKEN, "type": "gateway", "gateway": True}
    with EmulatorProcess([gateway]) as emu:
        yield emu


def rpc(emulator: EmulatorProcess, device: str, method: str, params: Any) -> tuple[int, Any]:
    return emulator.send_rpc(device, method, params, timeout_ms=5000)


def known(emulator: EmulatorProcess, device: str) -> bool:
    try:
        emulator.device(device)
    except EmulatorError:
        return False
    return True


@pytest.fixture
def aof_redis() -> Iterator[RedisServer]:
    with RedisServer(appendonly=True) as server:
        yield server


@pytest.fixture
def ledger_of(aof_redis: RedisServer) -> Iterator[CommandLedger]:
    client = redis_lib.Redis.from_url(aof_redis.url, decode_responses=True, socket_timeout=5)
    yield CommandLedger(client, dedupe_ttl_s=60, max_queued_rounds=10_000)
    client.close()


def start_daemon(tmp_path: Path, redis_url: str, emulator: EmulatorProcess, **overrides: Any) -> EdgeDaemon:
    config = simulated_config(tmp_path, redis_url, emulator.mqtt_port, offline_ready_after_s=30, **overrides)
    daemon = EdgeDaemon(config, tmp_path).start()
    try:
        wait_for(lambda: known(emulator, "motor_01") and known(emulator, "motor_02"),
                 what="motors announced")  # fmt: skip
    except BaseException:
        daemon.kill()
        raise
    return daemon


def wait_for_steps(tmp_path: Path, motor: str, steps: int) -> None:
    """The step file is read by polling: wait for the count before asserting on it."""
    wait_for(lambda: recorded_steps(tmp_path, motor) >= steps, timeout_s=5, what=f"{steps} steps of {motor}")


# Every round reported (no progress throttle): the per-round series is the probe that the outbox
# lost, repeated and reordered nothing across a crash or an outage.
EVERY_ROUND = {"progress_interval_s": 0}


def rounds_series(emulator: EmulatorProcess, device: str) -> list[int]:
    """roundsCompleted of every per-round entry ThingsBoard received (heartbeats repeat the counter)."""
    return [
        e["values"]["roundsCompleted"]
        for e in emulator.timeseries(device)
        if "roundsCompleted" in e["values"] and "commandRoundsDone" in e["values"]
    ]


def test_rotate_duplicate_stop_status_and_errors_through_the_gateway(
    tmp_path: Path, aof_redis: RedisServer, emulator: EmulatorProcess, ledger_of: CommandLedger
) -> None:
    with start_daemon(tmp_path, aof_redis.url, emulator) as daemon:
        code, reply = rpc(emulator, "motor_01", "rotate", {"commandId": "c-e2e00001", "rounds": 3})
        assert (code, reply) == (200, {"accepted": True, "commandId": "c-e2e00001", "queuedRounds": 3,
                                       "duplicate": False, "held": False})  # fmt: skip
        code, dup = rpc(emulator, "motor_01", "rotate", {"commandId": "c-e2e00001", "rounds": 3})
        assert dup["duplicate"] is True
        wait_for(lambda: rpc(emulator, "motor_01", "status", {})[1]["commandsDone"] == 1, what="command done")
        wait_for_steps(tmp_path, "motor_01", 3 * SPR)
        assert recorded_steps(tmp_path, "motor_01") == 3 * SPR  # the duplicate did not turn the motor
        wait_for(lambda: 3 in rounds_series(emulator, "motor_01"), what="round telemetry")
        series = rounds_series(emulator, "motor_01")  # progress is throttled: a subset, then the done
        assert series == sorted(set(series))
        assert series[-1] == 3
        done = [
            e["values"] for e in emulator.timeseries("motor_01") if e["values"].get("commandDone") is True
        ]
        assert done[-1]["commandId"] == "c-e2e00001"
        assert done[-1]["receivedTs"] <= done[-1]["startedTs"] <= done[-1]["finishedTs"]

        rpc(emulator, "motor_02", "rotate", {"commandId": "c-e2e00002", "rounds": 5000})
        rpc(emulator, "motor_02", "rotate", {"commandId": "c-e2e00003", "rounds": 2, "speedRpm": 30})
        code, stop = rpc(emulator, "motor_02", "stop", {})
        assert stop["stopped"] is True
        assert stop["clearedCommands"] == ["c-e2e00002", "c-e2e00003"]
        status = rpc(emulator, "motor_02", "status", {})[1]
        assert status["queuedRounds"] == 0
        assert status["roundsCompleted"] + stop["clearedRounds"] == 5002
        wait_for(lambda: rpc(emulator, "motor_02", "status", {})[1]["state"] == "stopped")

        assert rpc(emulator, "motor_01", "spin", {})[1]["error"] == "UNKNOWN_METHOD"
        bad = rpc(emulator, "motor_01", "rotate", {"commandId": "c-e2e00004", "rounds": -1})[1]
        assert bad["error"] == "BAD_PARAMS"
        assert "rounds" in bad["detail"]

        # SIGTERM while connected and turning: the motor parks, the rest stays queued, exit 0.
        rpc(emulator, "motor_01", "rotate", {"commandId": "c-e2e00005", "rounds": 1000})
        wait_for(lambda: ledger_of.status("motor_01").current_command_id == "c-e2e00005", what="running")
        assert daemon.stop() == 0
    status = ledger_of.status("motor_01")
    assert status.current_command_id == "c-e2e00005"
    assert status.queued_rounds == 1000 - (status.rounds_completed - 3)


def test_kill_9_mid_command_resumes_the_remaining_rounds(
    tmp_path: Path, aof_redis: RedisServer, emulator: EmulatorProcess, ledger_of: CommandLedger
) -> None:
    rounds = 20
    first = start_daemon(tmp_path, aof_redis.url, emulator, **EVERY_ROUND)
    with first:
        rpc(emulator, "motor_01", "rotate", {"commandId": "c-e2e00010", "rounds": rounds, "speedRpm": 300})
        wait_for(lambda: ledger_of.status("motor_01").rounds_completed >= 5, what="5 rounds")
        first.kill()
    done_at_kill = ledger_of.status("motor_01").rounds_completed
    steps_at_kill = recorded_steps(tmp_path, "motor_01")
    with redis_lib.Redis.from_url(aof_redis.url, decode_responses=True) as client:
        written_at_kill = int(client.hget(ledger_of.keys.motor("motor_01"), "pd") or 0)
    every = CheckpointPolicy().every_pulses(SPR)
    assert 5 <= done_at_kill < rounds
    assert done_at_kill == written_at_kill // SPR
    # Progress is written after the pulses it counts, every checkpoint: the ledger never counts more
    # than turned, and less by at most one checkpoint interval plus one write in flight.
    assert 0 <= steps_at_kill - written_at_kill <= 2 * every

    with start_daemon(tmp_path, aof_redis.url, emulator, **EVERY_ROUND):
        wait_for(
            lambda: ledger_of.status("motor_01").commands_done == 1, what="command finished after restart"
        )
        wait_for(lambda: rounds in rounds_series(emulator, "motor_01"), what="final telemetry")
        wait_for_steps(tmp_path, "motor_01", steps_at_kill + rounds * SPR - written_at_kill)
    total_steps = recorded_steps(tmp_path, "motor_01")
    # Resumed from the last checkpoint: exactly the pulses it had not counted, so the only extra is
    # the sliver turned since that checkpoint.
    assert total_steps - steps_at_kill == rounds * SPR - written_at_kill
    assert rounds * SPR <= total_steps <= rounds * SPR + 2 * every
    assert ledger_of.status("motor_01").rounds_completed == rounds
    series = rounds_series(emulator, "motor_01")
    assert series == sorted(series)
    assert list(dict.fromkeys(series))[-rounds:] == list(range(1, rounds + 1))


def test_thingsboard_outage_keeps_turning_and_flushes_telemetry_in_order(
    tmp_path: Path, aof_redis: RedisServer, emulator: EmulatorProcess, ledger_of: CommandLedger
) -> None:
    rounds = 24
    with start_daemon(tmp_path, aof_redis.url, emulator, **EVERY_ROUND) as daemon:
        rpc(emulator, "motor_01", "rotate", {"commandId": "c-e2e00020", "rounds": rounds, "speedRpm": 180})
        wait_for(lambda: ledger_of.status("motor_01").rounds_completed >= 2, what="2 rounds")
        emulator.stop()  # ThingsBoard gone
        at_cut = ledger_of.status("motor_01").rounds_completed
        wait_for(
            lambda: ledger_of.status("motor_01").rounds_completed >= at_cut + 4, what="rounds while offline"
        )
        assert ledger_of.outbox_length() >= 4  # telemetry waits locally
        emulator.start()  # same ports, a fresh ThingsBoard that has seen nothing yet
        wait_for(lambda: ledger_of.status("motor_01").commands_done == 1, timeout_s=60, what="command done")
        wait_for(lambda: rounds in rounds_series(emulator, "motor_01"), timeout_s=60, what="flush")
        wait_for(lambda: ledger_of.outbox_length() == 0, what="outbox drained")
        # The new ThingsBoard never saw a v1/gateway/connect: the reconnect heartbeat made motor_02
        # (which sent nothing else) reachable for RPCs again.
        assert rpc(emulator, "motor_02", "status", {})[1]["state"] == "idle"
        assert daemon.running
    series = rounds_series(emulator, "motor_01")
    # Everything from the outage arrived, in order, each round exactly once.
    assert series == list(range(series[0], rounds + 1))
    assert series[0] <= at_cut + 1
    ts = [e["ts"] for e in emulator.timeseries("motor_01")]
    assert ts == sorted(ts)


def test_local_redis_restart_mid_command_loses_nothing(
    tmp_path: Path, aof_redis: RedisServer, emulator: EmulatorProcess, ledger_of: CommandLedger
) -> None:
    rounds = 20
    with start_daemon(tmp_path, aof_redis.url, emulator, **EVERY_ROUND):
        rpc(emulator, "motor_01", "rotate", {"commandId": "c-e2e00030", "rounds": rounds, "speedRpm": 300})
        wait_for(lambda: ledger_of.status("motor_01").rounds_completed >= 3, what="3 rounds")
        aof_redis.restart()
        wait_for(lambda: ledger_of.status("motor_01").commands_done == 1, timeout_s=60, what="command done")
        _code, dup = rpc(emulator, "motor_01", "rotate", {"commandId": "c-e2e00030", "rounds": rounds})
        assert dup["duplicate"] is True  # the dedupe marker survived the restart
        wait_for(lambda: rounds in rounds_series(emulator, "motor_01"), what="final telemetry")
        wait_for_steps(tmp_path, "motor_01", rounds * SPR)
    assert ledger_of.status("motor_01").rounds_completed == rounds
    assert recorded_steps(tmp_path, "motor_01") == rounds * SPR  # Redis restarts cost no steps
    series = list(dict.fromkeys(rounds_series(emulator, "motor_01")))
    assert series == list(range(1, rounds + 1))


def test_long_rotation_reports_far_fewer_progress_messages_than_rounds_with_exact_start_and_done(
    tmp_path: Path, aof_redis: RedisServer, emulator: EmulatorProcess, ledger_of: CommandLedger
) -> None:
    rounds = 600
    interval_s = 0.2  # the settings' default, which the harness leaves in place
    # 200 rounds/s; stopping within half a 10-pulse round (edge.settings) takes a quick ramp.
    fast = replace(DEFAULT_MOTORS[0], steps_per_round=10, acceleration_sps2=400_000)
    motors = (fast, *DEFAULT_MOTORS[1:])
    with start_daemon(tmp_path, aof_redis.url, emulator, motors=motors):
        rpc(emulator, "motor_01", "rotate", {"commandId": "c-e2e00050", "rounds": rounds})

        def reported() -> list[dict[str, Any]]:
            entries = emulator.timeseries("motor_01")
            return [e["values"] for e in entries if e["values"].get("commandId") == "c-e2e00050"]

        wait_for(lambda: any(v["commandDone"] for v in reported()), what="done telemetry")
        wait_for_steps(tmp_path, "motor_01", rounds * 10)
    assert ledger_of.status("motor_01").rounds_completed == rounds  # every round persisted
    assert recorded_steps(tmp_path, "motor_01") == rounds * 10
    values = reported()
    starts = [v for v in values if v.get("state") == "running" and "startedTs" in v and not v["commandDone"]]
    dones = [v for v in values if v["commandDone"]]
    progress = [v for v in values if "roundsCompleted" in v and not v["commandDone"]]
    assert [(v["commandRounds"], v["commandRoundsDone"]) for v in starts] == [(rounds, 0)]
    assert len(dones) == 1
    done = dones[0]
    assert (done["commandRounds"], done["commandRoundsDone"], done["roundsCompleted"]) == (
        rounds,
        rounds,
        rounds,
    )
    assert done["receivedTs"] <= done["startedTs"] <= done["finishedTs"]
    turning_s = (done["finishedTs"] - done["startedTs"]) / 1000
    assert turning_s > 2 * interval_s  # long enough that progress had to be reported on the way
    assert 1 <= len(progress) <= turning_s / interval_s + 1
    assert len(progress) < rounds / 10
    done_counts = [v["commandRoundsDone"] for v in progress]
    assert done_counts == sorted(set(done_counts))
    assert done_counts[-1] < rounds


def test_rpc_resent_by_thingsboard_is_answered_but_not_run_twice(
    tmp_path: Path, aof_redis: RedisServer, emulator: EmulatorProcess
) -> None:
    """ThingsBoard re-sends an unanswered RPC when the device re-subscribes (same request id)."""
    with start_daemon(tmp_path, aof_redis.url, emulator) as daemon, ThreadPoolExecutor(1) as pool:
        emulator.set_faults(gateway_reply_delay_ms=1500)  # our reply "arrives" late: still pending
        first = pool.submit(rpc, emulator, "motor_01", "rotate", {"commandId": "c-e2e00040", "rounds": 2})
        wait_for(lambda: '"commandId": "c-e2e00040"' in daemon.log, what="first delivery handled")
        assert emulator.redeliver_rpc("motor_01") == 1
        wait_for(lambda: '"duplicate": true' in daemon.log, what="re-delivery answered as duplicate")
        code, reply = first.result(timeout=10)
        emulator.reset_faults()
        assert code == 200
        assert reply["commandId"] == "c-e2e00040"
        wait_for(lambda: rpc(emulator, "motor_01", "status", {})[1]["commandsDone"] == 1, what="done")
        time.sleep(0.3)
        assert recorded_steps(tmp_path, "motor_01") == 2 * SPR


def test_cloud_cannot_update_or_restart_the_pi_through_gateway_rpcs(
    tmp_path: Path, aof_redis: RedisServer, emulator: EmulatorProcess
) -> None:
    """gateway_update would pip-install, gateway_restart/reboot re-exec or reboot; all refused."""
    with start_daemon(tmp_path, aof_redis.url, emulator) as daemon:
        assert daemon.running
        pid = daemon.pid
        for method in ("gateway_update", "gateway_restart"):
            code, reply = emulator.send_rpc("pi-01", method, {}, timeout_ms=5000)
            assert (code, reply) == (200, {"error": "Method not found", "code": 404}), method
        assert emulator.send_rpc("pi-01", "gateway_ping", {}, timeout_ms=5000)[0] == 200  # still answering
        time.sleep(1.5)  # a scheduled restart would fire after 1 s
        assert daemon.running
        assert daemon.pid == pid
        assert rpc(emulator, "motor_01", "status", {})[0] == 200
