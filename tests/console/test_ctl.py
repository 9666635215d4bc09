"""`giftwheel ctl` as an operator runs it, against a real `giftwheel api` process and its Redis."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import orjson
from redis.asyncio import Redis

from cloud.console.passwords import verify_password
from devstack.api_process import ApiProcess
from devstack.processes import giftwheel_argv
from giftwheel.contracts import EVENT_FIELD, EVENTS_STREAM
from tests.console.conftest import OPERATOR, PASSWORD, audit, entries, two_motors


def ctl(
    api: ApiProcess | None, *args: str, password: str = PASSWORD, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIFTWHEEL_")}
    if api is not None:
        env |= {
            "GIFTWHEEL_CTL_URL": api.url,
            "GIFTWHEEL_CTL_USER": OPERATOR,
            "GIFTWHEEL_CTL_PASSWORD": password,
        }
    return subprocess.run(
        giftwheel_argv("ctl", *args),
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hash_password_prints_a_hash_the_settings_take() -> None:
    done = ctl(None, "hash-password", stdin="s3cret pass\n")
    assert done.returncode == 0, done.stderr
    stored = done.stdout.strip()
    assert stored.startswith("scrypt$")
    assert "s3cret" not in stored
    assert verify_password("s3cret pass", stored)


async def test_ctl_status_test_gift_dlq_rules_and_audit(
    console_api: ApiProcess, cloud: Redis, tmp_path: Path
) -> None:
    status = ctl(console_api, "--json", "status")
    assert status.returncode == 0, status.stderr
    assert orjson.loads(status.stdout)["motors"] == []
    assert "backlog 0" in ctl(console_api, "status").stdout

    sent = ctl(console_api, "test-gift", "--gift", "Rose", "--diamond", "3")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith("test gift accepted: test:")
    [fields] = await entries(cloud, EVENTS_STREAM)
    assert orjson.loads(fields[EVENT_FIELD])["platform"] == "test"

    assert ctl(console_api, "dlq").stdout.startswith("0 dead letters")
    missing = ctl(console_api, "dlq", "replay", "1-1")
    assert missing.returncode == 1
    assert "not found: 1-1" in missing.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nrules: []\n")
    refused = ctl(console_api, "rules", str(bad))
    assert refused.returncode == 1
    assert "default_device: Field required" in refused.stderr
    good = tmp_path / "good.yaml"
    good.write_text("version: 1\ndefault_device: motor_01\n")
    assert ctl(console_api, "rules", str(good)).stdout.strip() == "rules uploaded: version 1, 0 rules"
    assert ctl(console_api, "rules").stdout.strip() == "version: 1\ndefault_device: motor_01"

    actions = [(e["action"], e["result"]) for e in await audit(cloud)]
    assert ("test-gift", "ok") in actions
    assert ("rules.upload", "refused") in actions
    assert ("rules.upload", "ok") in actions
    assert actions.count(("login", "ok")) == actions.count(("logout", "ok")) == 8
    assert "rules.upload" in ctl(console_api, "audit").stdout


async def test_ctl_fails_loudly(console_api: ApiProcess, cloud: Redis) -> None:
    wrong = ctl(console_api, "status", password="nope")
    assert wrong.returncode == 1
    assert "login refused: HTTP 401: wrong user or password" in wrong.stderr
    # No worker runs here: the request is queued, not confirmed, and the exit code says so.
    unconfirmed = ctl(console_api, "hold", "motor_01", "--reason", "test")
    assert unconfirmed.returncode == 1
    assert "not confirmed within 1 s" in unconfirmed.stdout
    nowhere = ctl(None, "status")
    assert nowhere.returncode == 1
    assert "no deployment: pass --url or set GIFTWHEEL_CTL_URL" in nowhere.stderr


async def test_ctl_status_shows_each_motor_its_work_and_the_fleet(
    console_api: ApiProcess, cloud: Redis
) -> None:
    await two_motors(cloud, time.time_ns() // 1_000_000)
    shown = ctl(console_api, "status")
    assert shown.returncode == 0, shown.stderr
    figures, header, one, two = shown.stdout.splitlines()
    assert figures == "backlog 0  worker lag 0.0 s  dead letters 0"  # no ingest rate on a first read
    assert header.split() == [
        "MOTOR",
        "LINK",
        "STATE",
        "COMMAND",
        "QUEUED",
        "HELD",
        "FAILED",
        "LAST",
        "DONE",
        "HOLD",
    ]
    assert one.split() == ["wheel-1", "online", "idle", "-", "0", "0", "2", "2", "min", "ago", "-"]
    assert two.split() == ["wheel-2", "OFFLINE", "held", "-", "0", "1", "0", "-", "ops:", "jam"]
