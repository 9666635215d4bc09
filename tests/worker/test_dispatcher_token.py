"""Each worker its own dispatcher token: ThingsBoard keeps one session per device, so two workers on
one token would knock each other off (the emulator evicts as ThingsBoard does, by default).

Among our workers a Redis lease per token makes a shared token a startup error; a client outside our
Redis only ThingsBoard sees, and the worker that keeps being closed right after connecting says so.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from structlog.testing import capture_logs

from cloud.redis_client import connect
from cloud.settings import CloudSettings
from cloud.worker.cli import EXIT_TOKEN_IN_USE
from cloud.worker.metrics import WorkerMetrics
from cloud.worker.rules import parse_rules
from cloud.worker.service import Worker
from cloud.worker.takeover import TakeoverWatch
from cloud.worker.token_lease import TokenLost, TokenUnavailable, token_lease_key
from devstack.redis_server import RedisServer
from devstack.rpc_sink import RpcSink
from devstack.tb_emulator.server import Emulator
from tests.waiting import wait_until
from tests.worker.conftest import DISPATCHER_TOKEN, DISPATCHER_TOKENS, worker_running, worker_settings

RULES = parse_rules({"default_device": "motor_01"})
TAKEN_OVER = "giftwheel_worker_dispatcher_sessions_taken_over_total"


def tokens_settings(redis_url: str, port: int, **mqtt: Any) -> CloudSettings:
    """One token (``access_token=``) or a pool (``access_tokens=``), short leases and claim waits."""
    values = {"port": port, "token_lease_ttl_ms": 600, "token_claim_wait_s": 0.5, "reconnect_max_s": 0.5}
    return worker_settings(redis_url, port, mqtt={**values, **mqtt})


def connected_dispatchers(emulator: Emulator) -> list[str]:
    return sorted(
        s.device.name
        for s in emulator.hub.sessions.values()
        if s.device is not None and s.device.type == "dispatcher"
    )


async def claimed(worker: Worker) -> None:
    await wait_until(lambda: worker.dispatcher.is_ready, what=f"{worker.worker_id} connected")


async def refused(settings: CloudSettings, worker_id: str | None = None) -> str:
    """Start a worker that must be refused its token; return the reason it gives."""
    redis = connect(settings)
    try:
        worker = Worker(settings, redis, lambda: RULES, worker_id=worker_id)
        with pytest.raises(TokenUnavailable) as refusal:
            await worker.run(asyncio.Event())
        return str(refusal.value)
    finally:
        await redis.aclose()


async def test_a_second_worker_on_the_same_token_is_a_startup_error(
    redis_server: RedisServer, emulator: Emulator, sink: RpcSink
) -> None:
    settings = tokens_settings(redis_server.url, emulator.mqtt_port, access_token=DISPATCHER_TOKEN)
    async with worker_running(settings, RULES) as first:
        await claimed(first)
        reason = await refused(settings)
        assert f"in use by worker {first.worker_id}" in reason
        assert "its own dispatcher device" in reason
        assert DISPATCHER_TOKEN not in reason  # a fingerprint, never the token
        assert first.dispatcher.is_ready
        assert emulator.hub.stats["sessions_evicted"] == 0


async def test_workers_from_a_pool_each_claim_a_different_token(
    redis_server: RedisServer, emulator: Emulator, sink: RpcSink
) -> None:
    settings = tokens_settings(redis_server.url, emulator.mqtt_port, access_tokens=DISPATCHER_TOKENS[:2])
    async with worker_running(settings, RULES) as one, worker_running(settings, RULES) as two:
        await claimed(one)
        await claimed(two)
        assert {one.token.token, two.token.token} == set(DISPATCHER_TOKENS[:2])
        assert connected_dispatchers(emulator) == ["dispatcher-1", "dispatcher-2"]
        assert "all 2 dispatcher access tokens of the pool are in use" in await refused(settings)
    assert emulator.hub.stats["sessions_evicted"] == 0


async def test_a_stopped_worker_frees_its_token_at_once(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    settings = tokens_settings(
        redis_server.url, emulator.mqtt_port, access_token=DISPATCHER_TOKEN, token_lease_ttl_ms=60_000
    )
    async with worker_running(settings, RULES) as first:
        await claimed(first)
    assert await redis.exists(token_lease_key(DISPATCHER_TOKEN)) == 0
    async with worker_running(settings, RULES) as second:
        await claimed(second)


async def test_a_killed_workers_token_comes_back_to_its_id_at_once_and_to_others_when_it_expires(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    key = token_lease_key(DISPATCHER_TOKEN)
    settings = tokens_settings(redis_server.url, emulator.mqtt_port, access_token=DISPATCHER_TOKEN)
    # What a worker killed with -9 leaves: its lease, until the TTL runs out.
    await redis.set(key, "host-1", px=60_000)
    assert "in use by worker host-1" in await refused(settings, worker_id="host-2")
    redis_client = connect(settings)
    try:
        restarted = Worker(settings, redis_client, lambda: RULES, worker_id="host-1")  # systemd: %H-%i
        stop = asyncio.Event()
        task = asyncio.create_task(restarted.run(stop))
        await claimed(restarted)
        stop.set()
        await task
    finally:
        await redis_client.aclose()
    await redis.set(key, "host-1", px=300)
    waiting = tokens_settings(
        redis_server.url, emulator.mqtt_port, access_token=DISPATCHER_TOKEN, token_claim_wait_s=5
    )
    async with worker_running(waiting, RULES) as other:
        await claimed(other)
        assert await redis.get(key) == other.worker_id


async def test_a_worker_whose_token_is_taken_over_stops_and_says_so(
    redis_server: RedisServer, redis: Redis, emulator: Emulator, sink: RpcSink
) -> None:
    settings = tokens_settings(redis_server.url, emulator.mqtt_port, access_token=DISPATCHER_TOKEN)
    redis_client = connect(settings)
    worker = Worker(settings, redis_client, lambda: RULES)
    task = asyncio.create_task(worker.run(asyncio.Event()))
    try:
        await claimed(worker)
        await redis.set(token_lease_key(DISPATCHER_TOKEN), "intruder", px=60_000)
        with pytest.raises(TokenLost, match="worker intruder now holds"):
            await asyncio.wait_for(task, 10)
        assert not worker.dispatcher.is_ready
        assert await redis.get(token_lease_key(DISPATCHER_TOKEN)) == "intruder"  # not released: not ours
    finally:
        await redis_client.aclose()


def test_the_cli_exits_with_its_code_and_names_the_problem(redis_server: RedisServer, tmp_path: Path) -> None:
    import redis as redis_sync

    redis_sync.Redis.from_url(redis_server.url).set(token_lease_key("cli-token"), "worker-a", px=60_000)
    rules = tmp_path / "rules.yaml"
    rules.write_text("default_device: motor_01\n")
    env = {
        "GIFTWHEEL_MODE": "development",
        "GIFTWHEEL_REDIS_URL": redis_server.url,
        "GIFTWHEEL_WORKER__MQTT__ACCESS_TOKEN": "cli-token",
        "GIFTWHEEL_WORKER__MQTT__TOKEN_CLAIM_WAIT_S": "0.5",
        "PATH": "/usr/bin:/bin",
    }
    done = subprocess.run(
        [sys.executable, "-m", "giftwheel.cli", "worker", "--rules", str(rules)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == EXIT_TOKEN_IN_USE, done.stderr
    assert "dispatcher access token" in done.stderr
    assert "is in use by worker worker-a" in done.stderr
    assert "cli-token" not in done.stderr


async def test_two_workers_sharing_a_token_outside_one_redis_flap_and_say_so(
    redis_server: RedisServer, emulator: Emulator, sink: RpcSink
) -> None:
    """Two deployments (here: two Redis databases) with one token: nothing in Redis can tell, so the
    emulator evicts each in turn, as ThingsBoard does, and each worker logs the takeover loudly."""
    workers_settings = [
        tokens_settings(
            redis_server.url.rsplit("/", 1)[0] + f"/{db}",
            emulator.mqtt_port,
            access_token=DISPATCHER_TOKEN,
            takeover_alarm_after=2,
            reconnect_max_s=0.2,
        )
        for db in (1, 2)
    ]
    with capture_logs() as logs:
        async with (
            worker_running(workers_settings[0], RULES) as one,
            worker_running(workers_settings[1], RULES) as two,
        ):

            def taken_over(worker: Worker) -> float:
                return worker.metrics.registry.get_sample_value(TAKEN_OVER) or 0

            await wait_until(
                lambda: taken_over(one) >= 2 and taken_over(two) >= 2, timeout_s=30, what="both flap"
            )
    assert emulator.hub.stats["sessions_evicted"] >= 4
    alarms = [e for e in logs if e["event"] == "dispatcher_session_taken_over"]
    assert alarms
    assert all(e["log_level"] == "error" for e in alarms)
    assert "another session is using this dispatcher's access token" in alarms[0]["message"]


def test_only_sessions_the_server_cuts_short_count_and_a_good_session_resets_the_streak() -> None:
    metrics = WorkerMetrics()
    watch = TakeoverWatch(metrics, window_s=30, alarm_after=2, token_fingerprint="f")
    with capture_logs() as logs:
        assert watch.session_ended(0.1, closed_by_server=True)
        assert not watch.session_ended(0.1, closed_by_server=False)  # our own timeout, not the server
        assert watch.session_ended(0.1, closed_by_server=True)
        assert watch.session_ended(0.1, closed_by_server=True)
        assert not watch.session_ended(45, closed_by_server=True)  # a long session: ThingsBoard restarted
        assert watch.session_ended(0.1, closed_by_server=True)
    assert [e["streak"] for e in logs if e["event"] == "dispatcher_session_taken_over"] == [2]
    assert metrics.registry.get_sample_value(TAKEN_OVER) == 4
