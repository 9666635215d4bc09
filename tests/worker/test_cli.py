"""``giftwheel worker`` and ``giftwheel worker dlq list|replay`` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import redis as redis_sync

from cloud.worker.dlq import DLQ_STREAM
from devstack.redis_server import RedisServer
from giftwheel.contracts import EVENTS_STREAM


def giftwheel(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"GIFTWHEEL_MODE": "development", "GIFTWHEEL_REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "giftwheel.cli", "worker", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_dlq_list_and_replay(redis_server: RedisServer) -> None:
    client = redis_sync.Redis.from_url(redis_server.url, decode_responses=True)
    first = str(
        client.xadd(
            DLQ_STREAM,
            {
                "stream": EVENTS_STREAM,
                "entryId": "1-0",
                "reason": "r1",
                "deliveries": "5",
                "event": "{}",
                "deadAt": "1",
            },
        )
    )
    client.xadd(
        DLQ_STREAM,
        {
            "stream": EVENTS_STREAM,
            "entryId": "2-0",
            "reason": "r2",
            "deliveries": "1",
            "event": "x",
            "deadAt": "2",
        },
    )
    listed = giftwheel(redis_server.url, "dlq", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["entryId"], r["reason"], r["deliveries"]) for r in rows] == [
        ("1-0", "r1", 5),
        ("2-0", "r2", 1),
    ]

    replayed = giftwheel(redis_server.url, "dlq", "replay", str(first))
    assert replayed.returncode == 0, replayed.stderr
    assert replayed.stdout.startswith(f"{first} -> ")
    assert [fields for _id, fields in client.xrange(EVENTS_STREAM) or []] == [{"event": "{}"}]
    assert client.xlen(DLQ_STREAM) == 1

    nothing = giftwheel(redis_server.url, "dlq", "replay")
    assert nothing.returncode == 2
    assert "--all" in nothing.stderr
    everything = giftwheel(redis_server.url, "dlq", "replay", "--all")
    assert everything.returncode == 0
    assert client.xlen(DLQ_STREAM) == 0
    assert client.xlen(EVENTS_STREAM) == 2
    client.close()


def test_worker_refuses_to_start_without_valid_rules(redis_server: RedisServer, tmp_path: Path) -> None:
    missing = giftwheel(redis_server.url)
    assert missing.returncode == 2
    assert "no rules file" in missing.stderr
    bad = tmp_path / "rules.yaml"
    bad.write_text("default_device: 'not a device name'\n")
    refused = giftwheel(redis_server.url, "--rules", str(bad))
    assert refused.returncode == 2
    assert "default_device: String should match pattern" in refused.stderr
