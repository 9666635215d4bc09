"""Settings the API and the workers must share (the stream shard count) are recorded in Redis by the
first process and checked by every other: a process that disagrees refuses to run and names both
values. `giftwheel worker reshard` changes the record, only when nothing would be stranded."""

from __future__ import annotations

import itertools
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from cloud.agreement import AGREED_KEY, Agreed, Agreement, SettingsDisagree
from cloud.api.app import create_app
from cloud.worker.cli import EXIT_CONFIG
from cloud.worker.consumer import ensure_group
from cloud.worker.leases import WORKERS_KEY
from devstack.api_process import ApiProcess
from devstack.asgi_server import serve
from devstack.processes import ProcessFailed, giftwheel_argv
from devstack.redis_server import RedisServer
from giftwheel.contracts import EVENTS_STREAM, WORKER_GROUP, event_streams
from tests.ingest.conftest import API_KEY, gift, make_settings
from tests.ops.target_root import REPO
from tests.ops.test_settings_strict import clean_environ

RULES = REPO / "cloud" / "worker" / "rules.example.yaml"
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def _env(redis_url: str, shards: int) -> dict[str, str]:
    return {
        **clean_environ(),
        "GIFTWHEEL_MODE": "development",
        "GIFTWHEEL_REDIS_URL": redis_url,
        "GIFTWHEEL_INGEST__STREAM_SHARDS": str(shards),
    }


def _worker(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        giftwheel_argv("worker", *args), env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_a_worker_with_another_shard_count_than_the_api_refuses_to_start(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    # Before: the API wrote one stream, workers set to 8 read eight others; events piled up.
    with ApiProcess(_env(redis_server.url, 1), log_dir=tmp_path):
        result = _worker("--rules", str(RULES), env=_env(redis_server.url, 8))
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert "GIFTWHEEL_INGEST__STREAM_SHARDS is 8 here but 1 in the agreed settings" in result.stderr
    assert "recorded by api on" in result.stderr
    assert "Changing the number of stream shards" in result.stderr


async def test_an_api_with_another_shard_count_than_the_workers_refuses_to_start(
    redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    await Agreement(redis, Agreed(8), role="worker w1").check()  # what a worker records at start
    with pytest.raises(ProcessFailed) as failed:
        ApiProcess(_env(redis_server.url, 1), log_dir=tmp_path).start()
    assert "GIFTWHEEL_INGEST__STREAM_SHARDS is 1 here but 8 in the agreed settings" in str(failed.value)
    assert "recorded by worker w1 on" in str(failed.value)


async def test_the_first_process_records_and_a_concurrent_start_cannot_overwrite(redis: Redis) -> None:
    first = await Agreement(redis, Agreed(4), role="api").check()
    assert first["stream_shards"] == "4"
    with pytest.raises(SettingsDisagree, match="is 2 here but 4"):
        await Agreement(redis, Agreed(2), role="worker").check()
    assert (await redis.hgetall(AGREED_KEY))["stream_shards"] == "4"
    with pytest.raises(SettingsDisagree, match=r"the consumer group .* is other here but workers"):
        await Agreement(redis, Agreed(4, worker_group="other"), role="worker").check()


@pytest.mark.parametrize(("written_with", "started_with"), [(1, 8), (4, 1), (8, 4)])
async def test_no_count_is_recorded_that_would_strand_entries_from_before_the_record(
    redis: Redis, written_with: int, started_with: int
) -> None:
    """A Redis a giftwheel used before agreed settings existed: streams, no record."""
    old_streams = event_streams(written_with)
    for stream in old_streams:
        await ensure_group(redis, stream)
    stranded = old_streams[-1]  # outside the new layout in each case
    await redis.xadd(stranded, {"event": "{}"})
    with pytest.raises(
        SettingsDisagree, match=rf"STREAM_SHARDS={started_with} does not read .*{stranded} 1\)"
    ):
        await Agreement(redis, Agreed(started_with), role="api").check()
    assert not await redis.exists(AGREED_KEY)
    # Processed entries strand nothing: then the new count is recorded.
    read: Any = await redis.xreadgroup(WORKER_GROUP, "w1", {stranded: ">"})
    await redis.xack(stranded, WORKER_GROUP, *(entry_id for _, entries in read for entry_id, _ in entries))
    assert (await Agreement(redis, Agreed(started_with), role="api").check())["stream_shards"] == str(
        started_with
    )


async def test_a_running_api_stops_taking_events_when_the_record_changes(
    redis_server: RedisServer, redis: Redis, capfd: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(redis_server.url, ingest={"backlog_poll_interval_s": 0.05})
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        await _post_until(client, 202, "before")
        await redis.hset(AGREED_KEY, "stream_shards", "8")  # e.g. a reshard this API missed
        refused, refused_id = await _post_until(client, 503, "during")
        assert refused.json()["error"] == "unavailable"
        # Refused before any write: the sender is told nothing was stored, not "may have been".
        assert refused.json()["detail"].startswith("nothing stored: this API's settings disagree")
        # The sender is told to retry; the operator's log says why, with both values.
        log = capfd.readouterr().out
        assert "settings_disagree" in log
        assert "GIFTWHEEL_INGEST__STREAM_SHARDS is 1 here but 8" in log
        await redis.hset(AGREED_KEY, "stream_shards", "1")
        await _post_until(client, 202, "after")
    assert refused_id not in str(await redis.xrange(EVENTS_STREAM))


async def test_an_api_started_while_redis_was_away_checks_before_its_first_write(
    redis_server: RedisServer, redis: Redis, capfd: pytest.CaptureFixture[str]
) -> None:
    redis_server.stop()
    # No backlog poll in this test's time: the check before the first write is the only one.
    settings = make_settings(redis_server.url, ingest={"backlog_poll_interval_s": 3600})
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        redis_server.start()
        await Agreement(redis, Agreed(8), role="worker w1").check()
        refused = await client.post("/v1/events", json=gift(eventId="away:1"), headers=AUTH)
        assert refused.status_code == 503
        # The sender is told to retry; the operator's log says why, with both values.
        log = capfd.readouterr().out
        assert "settings_disagree" in log
        assert "GIFTWHEEL_INGEST__STREAM_SHARDS is 1 here but 8" in log
        assert await redis.exists(EVENTS_STREAM) == 0
        await redis.hset(AGREED_KEY, "stream_shards", "1")
        accepted = await client.post("/v1/events", json=gift(eventId="away:2"), headers=AUTH)
        assert accepted.status_code == 202
    assert await redis.xlen(EVENTS_STREAM) == 1


async def _post_until(client: httpx.AsyncClient, status: int, prefix: str) -> tuple[httpx.Response, str]:
    """Post new events until one is answered ``status`` (the backlog poll notices a change)."""
    deadline = time.monotonic() + 10
    for n in itertools.count():
        event_id = f"{prefix}:{n}"
        response = await client.post("/v1/events", json=gift(eventId=event_id), headers=AUTH)
        if response.status_code == status or time.monotonic() > deadline:
            assert response.status_code == status, response.text
            return response, event_id
    raise AssertionError("unreachable")


async def test_reshard_waits_for_workers_and_backlog_then_moves_everyone(
    redis_server: RedisServer, redis: Redis
) -> None:
    await Agreement(redis, Agreed(1), role="api").check()
    await ensure_group(redis, EVENTS_STREAM)
    await redis.xadd(EVENTS_STREAM, {"event": "{}"})
    await redis.zadd(WORKERS_KEY, {"w1": time.time_ns() // 1_000_000})
    new = _env(redis_server.url, 4)

    live = _worker("reshard", env=new)
    assert live.returncode == 1
    assert "1 worker(s) still running on the old 1 shard(s)" in live.stderr
    await redis.zrem(WORKERS_KEY, "w1")

    stranded = _worker("reshard", env=new)
    assert stranded.returncode == 1
    assert "still hold 1 unprocessed entries" in stranded.stderr
    await redis.delete(EVENTS_STREAM)

    done = _worker("reshard", env=new)
    assert done.returncode == 0, done.stderr
    assert "agreed stream shards: 1 -> 4" in done.stdout
    assert (await redis.hgetall(AGREED_KEY))["stream_shards"] == "4"
    with pytest.raises(SettingsDisagree, match="is 1 here but 4"):
        await Agreement(redis, Agreed(1), role="api").check()
