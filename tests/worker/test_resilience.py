"""Nothing lost, nothing twice: a worker killed with -9 mid-batch, a worker hung (SIGSTOP) under its
watchdog, ThingsBoard gone mid-stream."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from redis.asyncio import Redis

from cloud.ingest.queue import GiftQueue
from cloud.ledger import Ledger
from cloud.worker.leases import lease_key
from cloud.worker.rules import parse_rules
from devstack.notify_supervisor import NotifySupervisor
from devstack.processes import ManagedProcess, giftwheel_argv
from devstack.redis_server import RedisServer
from devstack.rpc_sink import Arrival, RpcSink
from devstack.tb_emulator.harness import EmulatorProcess
from devstack.tb_emulator.server import Emulator
from giftwheel.contracts import WORKER_GROUP, GiftEvent, event_streams
from tests.waiting import wait_until
from tests.worker.conftest import (
    GATEWAY_TOKEN,
    MOTORS,
    gift,
    worker_process_env,
    worker_running,
    worker_settings,
)
from tests.worker.fast_rpc import FAST_RPC_SETTINGS, fast_rpc_emulator_args, start_fast_rpc_emulator

RULES_YAML = (
    "default_device: motor_01\nrules:\n  - {name: roses, match: {gift_name: Rose}, device: motor_02}\n"
)


async def produce(queue: GiftQueue, events: list[GiftEvent], rate_per_s: float) -> None:
    for event in events:
        await queue.append([event])
        await asyncio.sleep(1 / rate_per_s)


async def assert_each_event_turned_exactly_once(
    redis: Redis, streams: list[str], events: list[GiftEvent], arrivals: list[Arrival]
) -> None:
    """Every event is in exactly one command that reached its device (a commandId may arrive twice)."""
    ledger = Ledger(redis, streams=streams, ttl_s=3600)
    carried: dict[str, str] = {}
    distinct = {a.command_id: a for a in arrivals}
    for command_id, arrival in distinct.items():
        command = await ledger.find(command_id)
        assert command is not None, f"{command_id} reached {arrival.device} but is not in the ledger"
        assert command.rounds == arrival.rounds
        assert command.device == arrival.device
        for event_id in command.event_ids:
            assert event_id not in carried, f"{event_id} in {carried.get(event_id)} and {command_id}"
            carried[event_id] = command_id
    missing = {e.event_id for e in events} - set(carried)
    assert not missing, f"{len(missing)} events never reached a device"
    expected = {d: 0 for d in MOTORS}
    for event in events:
        expected["motor_02" if event.gift_name == "Rose" else "motor_01"] += event.diamond * event.quantity
    got = {d: 0 for d in MOTORS}
    for arrival in distinct.values():
        got[arrival.device] += arrival.rounds
    assert got == expected


async def assert_every_round_reached_once(
    redis: Redis, streams: list[str], events: list[GiftEvent], sinks: list[RpcSink]
) -> None:
    """Across the sinks of every ThingsBoard life: wait for all rounds, then each event turned once."""
    expected = sum(e.diamond for e in events)

    def distinct_rounds() -> int:
        return sum({a.command_id: a.rounds for s in sinks for a in s.arrivals}.values())

    await wait_until(lambda: distinct_rounds() >= expected, timeout_s=60, what="every round at a device")
    await asyncio.sleep(0.5)  # anything still in flight would show up as an extra (wrong) turn
    arrivals = [a for s in sinks for a in s.arrivals]
    await assert_each_event_turned_exactly_once(redis, streams, events, arrivals)
    assert distinct_rounds() == expected


def mixed_gifts(n: int) -> list[GiftEvent]:
    return [gift(gift_name="Rose" if i % 3 == 0 else "Heart", diamond=1 + i % 4) for i in range(n)]


@pytest.fixture
def procs() -> Iterator[list[ManagedProcess]]:
    started: list[ManagedProcess] = []
    yield started
    for proc in started:
        proc.kill()


def spawn_worker(
    procs: list[ManagedProcess],
    redis_url: str,
    mqtt_port: int,
    rules: Path,
    log_dir: Path,
    name: str,
    shards: int,
) -> ManagedProcess:
    env = worker_process_env(redis_url, mqtt_port, shards)
    proc = ManagedProcess(name, giftwheel_argv("worker", "--rules", str(rules)), log_dir=log_dir, env=env)
    procs.append(proc)
    return proc.start()


@pytest.mark.slow
async def test_kill_9_of_a_worker_mid_batch_loses_nothing_and_turns_nothing_twice(
    redis_server: RedisServer,
    redis: Redis,
    emulator: Emulator,
    sink: RpcSink,
    procs: list[ManagedProcess],
    tmp_path: Path,
) -> None:
    shards = 2
    streams = event_streams(shards)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_YAML)
    victim = spawn_worker(procs, redis_server.url, emulator.mqtt_port, rules, tmp_path, "a", shards)
    await wait_until(lambda: _owns(redis, streams, 2), timeout_s=20, what="first worker owns both shards")
    survivor = spawn_worker(procs, redis_server.url, emulator.mqtt_port, rules, tmp_path, "b", shards)
    await wait_until(lambda: _owner_count(redis, streams, 2), timeout_s=20, what="shards split")

    # Slow PUBACKs keep every batch in flight for a while, and slower answers keep the commands
    # unconfirmed: the kill surely lands mid-batch, after ThingsBoard already passed some commands
    # on, so the heir must send those again, under the same commandIds.
    emulator.hub.faults.puback_delay_ms = 250
    emulator.hub.faults.gateway_reply_delay_ms = 400
    events = mixed_gifts(600)
    queue = GiftQueue(redis, shards=shards, dedupe_ttl_s=3600)
    producer = asyncio.create_task(produce(queue, events, rate_per_s=600))
    await wait_until(lambda: len(sink.arrivals) >= 10, timeout_s=20, what="first commands")
    victim.kill()  # SIGKILL of the real process (its process group)
    await producer
    emulator.hub.faults.puback_delay_ms = 0
    emulator.hub.faults.gateway_reply_delay_ms = 0

    await assert_every_round_reached_once(redis, streams, events, [sink])
    command_ids = [a.command_id for a in sink.arrivals]
    assert len(command_ids) > len(set(command_ids)), "no command of the killed worker was sent again"
    log = survivor.log_path.read_text()
    assert "entries_reclaimed" in log, "the survivor never took over the killed worker's batch"
    assert survivor.running
    assert survivor.stop(timeout_s=15) == 0  # SIGTERM; -9 if it had to be killed


@pytest.mark.slow
async def test_a_hung_worker_is_restarted_by_its_watchdog_and_its_pending_entries_taken_over(
    redis_server: RedisServer,
    redis: Redis,
    emulator: Emulator,
    sink: RpcSink,
    procs: list[ManagedProcess],
    tmp_path: Path,
) -> None:
    """SIGSTOP: the process is there, holds its entries, answers nothing. Run as systemd runs it
    (Type=notify, WatchdogSec, Restart=on-failure; devstack/notify_supervisor.py plays systemd)."""
    streams = event_streams(1)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES_YAML)
    victim_id = "host-1"  # as giftwheel-worker@1 names it: the same id after the restart
    env = {
        **worker_process_env(redis_server.url, emulator.mqtt_port, 1),
        # ... and what a container's health check reads (`giftwheel worker alive`)
        "GIFTWHEEL_WORKER__ALIVE_FILE": str(tmp_path / "victim.alive"),
        "GIFTWHEEL_WORKER__ALIVE_INTERVAL_S": "0.2",
        "GIFTWHEEL_WORKER__ALIVE_MAX_AGE_S": "1",
    }
    watched = NotifySupervisor(
        "victim",
        giftwheel_argv("worker", "--rules", str(rules), "--worker-id", victim_id),
        log_dir=tmp_path,
        env=env,
        watchdog_s=3.0,
        restart_s=1.0,
    )
    with watched:
        await wait_until(lambda: bool(watched.seen("ready")), timeout_s=20, what="READY=1 from the worker")
        first_pid = watched.main_pid
        assert first_pid is not None
        await wait_until(
            lambda: _owned_by(redis, streams[0], victim_id), timeout_s=20, what="the victim owns the shard"
        )
        assert await _alive(env) == 0
        survivor = spawn_worker(procs, redis_server.url, emulator.mqtt_port, rules, tmp_path, "b", 1)
        # Slow PUBACKs and answers keep the victim's batches in flight (pending, un-acked).
        emulator.hub.faults.puback_delay_ms = 250
        emulator.hub.faults.gateway_reply_delay_ms = 400
        events = mixed_gifts(300)
        queue = GiftQueue(redis, shards=1, dedupe_ttl_s=3600)
        producer = asyncio.create_task(produce(queue, events, rate_per_s=300))
        await wait_until(lambda: _pending_with(redis, streams[0], victim_id), what="victim mid-batch")
        os.kill(first_pid, signal.SIGSTOP)
        stranded = await redis.xpending_range(streams[0], WORKER_GROUP, "-", "+", 10_000, victim_id)
        assert stranded, "the victim held no entries when it hung"
        await wait_until(lambda: _not_alive(env), timeout_s=20, what="health check: not alive")
        await producer
        emulator.hub.faults.puback_delay_ms = 0
        emulator.hub.faults.gateway_reply_delay_ms = 0

        await wait_until(lambda: bool(watched.seen("watchdog", first_pid)), timeout_s=20, what="watchdog")
        await wait_until(lambda: len(watched.seen("ready")) == 2, timeout_s=30, what="restarted, READY=1")
        assert [h.detail for h in watched.seen("killed", first_pid)] == ["SIGABRT"]  # woken, it died
        assert await _alive(env) == 0
        await assert_every_round_reached_once(redis, streams, events, [sink])
        # The hung worker's entries went to the other worker, by XAUTOCLAIM after its lease lapsed.
        assert "entries_reclaimed" in survivor.log_path.read_text()
        assert await redis.xpending_range(streams[0], WORKER_GROUP, "-", "+", 10_000, victim_id) == []
        # The new process keeps its watchdog fed (systemd would otherwise kill it again).
        second_pid = watched.main_pid
        await asyncio.sleep(2 * 3.0)
        assert watched.seen("watchdog", second_pid) == []
        assert second_pid == watched.main_pid
    assert watched.seen("stopping", second_pid), "the worker did not say STOPPING=1 on SIGTERM"


async def _alive(env: dict[str, str]) -> int:
    """`giftwheel worker alive`, as a container health check runs it: its exit status."""
    result = await asyncio.to_thread(
        subprocess.run,
        giftwheel_argv("worker", "alive"),
        env={**os.environ, **env},
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode


async def _not_alive(env: dict[str, str]) -> bool:
    return await _alive(env) == 1


async def _owned_by(redis: Redis, stream: str, worker_id: str) -> bool:
    return await redis.get(lease_key(stream)) == worker_id


async def _pending_with(redis: Redis, stream: str, consumer: str) -> bool:
    return bool(await redis.xpending_range(stream, WORKER_GROUP, "-", "+", 1, consumer))


async def _owns(redis: Redis, streams: list[str], n: int) -> bool:
    owners = [await redis.get(lease_key(s)) for s in streams]
    return sum(o is not None for o in owners) == n


async def _owner_count(redis: Redis, streams: list[str], n: int) -> bool:
    owners = {await redis.get(lease_key(s)) for s in streams}
    return None not in owners and len(owners) == n


@pytest.mark.slow
async def test_thingsboard_stopped_and_restarted_mid_stream_loses_nothing(
    redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    # Answers lost with ThingsBoard are waited for until their RPCs certainly expired: on the fast
    # timeline that takes seconds.
    emulator = await start_fast_rpc_emulator(tmp_path)
    port = emulator.mqtt_port
    sinks = [RpcSink("127.0.0.1", port, GATEWAY_TOKEN, MOTORS)]
    await sinks[0].start()
    settings = worker_settings(redis_server.url, port, rpc=FAST_RPC_SETTINGS)
    events = mixed_gifts(400)
    queue = GiftQueue(redis, shards=1, dedupe_ttl_s=3600)
    try:
        async with worker_running(settings, parse_rules({"default_device": "motor_01", "rules": [
            {"name": "roses", "match": {"gift_name": "Rose"}, "device": "motor_02"}
        ]})) as worker:  # fmt: skip
            producer = asyncio.create_task(produce(queue, events, rate_per_s=400))
            await wait_until(lambda: len(sinks[0].arrivals) >= 20, what="first commands")
            await sinks[0].close()
            await emulator.stop()
            await wait_until(lambda: not worker.dispatcher.is_ready, what="worker saw ThingsBoard go")
            await asyncio.sleep(0.5)  # the stream keeps filling meanwhile
            emulator = await start_fast_rpc_emulator(tmp_path, port)
            sinks.append(RpcSink("127.0.0.1", port, GATEWAY_TOKEN, MOTORS))
            await sinks[1].start()
            await producer
            await assert_every_round_reached_once(redis, worker.streams, events, sinks)
    finally:
        for s in sinks:
            await s.close()
        await emulator.stop()


@pytest.mark.slow
async def test_thingsboard_killed_with_9_and_restarted_mid_stream_loses_nothing(
    redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    sinks: list[RpcSink] = []
    with EmulatorProcess(**fast_rpc_emulator_args(tmp_path)) as tb:
        sinks.append(RpcSink("127.0.0.1", tb.mqtt_port, GATEWAY_TOKEN, MOTORS))
        await sinks[0].start()
        settings = worker_settings(redis_server.url, tb.mqtt_port, rpc=FAST_RPC_SETTINGS)
        events = mixed_gifts(400)
        queue = GiftQueue(redis, shards=1, dedupe_ttl_s=3600)
        rules = parse_rules(yaml.safe_load(RULES_YAML))
        try:
            async with worker_running(settings, rules) as worker:
                producer = asyncio.create_task(produce(queue, events, rate_per_s=400))
                await wait_until(lambda: len(sinks[0].arrivals) >= 20, what="first commands")
                tb.kill()  # every connection drops at once; ThingsBoard's in-memory RPCs are gone
                await wait_until(lambda: not worker.dispatcher.is_ready, what="worker saw ThingsBoard go")
                await asyncio.sleep(0.5)  # the stream keeps filling meanwhile
                await asyncio.to_thread(tb.start)
                sinks.append(RpcSink("127.0.0.1", tb.mqtt_port, GATEWAY_TOKEN, MOTORS))
                await sinks[1].start()
                await producer
                await assert_every_round_reached_once(redis, worker.streams, events, sinks)
        finally:
            for s in sinks:
                await s.close()
