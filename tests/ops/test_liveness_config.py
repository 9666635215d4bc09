"""Every long-running cloud process is watched the way its supervisor expects: the systemd units are
notify services with a watchdog, and compose health-checks the API and the workers with commands
that work against the real thing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cloud.settings import CloudSettings
from devstack.api_process import ApiProcess
from devstack.processes import giftwheel_argv
from devstack.redis_server import RedisServer
from tests.ops.test_compose import DEPLOY, example_env, interpolate
from tests.ops.test_settings_strict import clean_environ
from tests.ops.units import UNIT_DIR, directives


@pytest.mark.parametrize("unit", ["giftwheel-api.service", "giftwheel-worker@.service"])
def test_cloud_units_are_watched_notify_services(unit: str) -> None:
    service = directives((UNIT_DIR / unit).read_text())
    assert service["Type"] == ["notify"]
    assert service["NotifyAccess"] == ["main"]  # the process that speaks is the one systemd started
    assert service["Restart"] == ["on-failure"]  # a watchdog timeout counts as a failure
    watchdog_s = int(service["WatchdogSec"][0])
    # The worker pings while its lease loop went round within half of WatchdogSec; with Redis gone
    # a round still ends after the socket timeout, so an outage is not taken for a hang.
    settings = CloudSettings(mode="development")
    round_s = settings.worker.lease_ttl_ms / 3000 + settings.redis.socket_timeout_s
    assert watchdog_s / 2 > round_s
    assert int(service["TimeoutStartSec"][0]) > settings.worker.mqtt.token_claim_wait_s


def _compose_services() -> dict[str, Any]:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    result: dict[str, Any] = interpolate(compose["services"], example_env())
    return result


def test_compose_api_health_check_asks_a_real_api(redis_server: RedisServer, tmp_path: Path) -> None:
    api = _compose_services()["api"]
    check = api["healthcheck"]["test"]
    assert check[0] == "CMD"
    port = api["command"][api["command"].index("--port") + 1]
    assert f"127.0.0.1:{port}/healthz" in check[-1]
    env = {**clean_environ(), "GIFTWHEEL_MODE": "development", "GIFTWHEEL_REDIS_URL": redis_server.url}
    with ApiProcess(env, log_dir=tmp_path) as served:
        # The image's python is this interpreter here; the port is the one this API got.
        ours = [sys.executable, *(part.replace(f":{port}/", f":{served.port}/") for part in check[2:])]
        assert check[1] == "python"
        assert subprocess.run(ours, timeout=30, check=False).returncode == 0
    assert subprocess.run(ours, capture_output=True, timeout=30, check=False).returncode != 0


def test_compose_worker_health_check_reads_the_alive_file(tmp_path: Path) -> None:
    worker = _compose_services()["worker"]
    assert worker["healthcheck"]["test"] == ["CMD", "giftwheel", "worker", "alive"]
    assert worker["environment"]["GIFTWHEEL_WORKER__ALIVE_FILE"].startswith("/tmp/")
    alive = tmp_path / "worker.alive"
    env = {
        **clean_environ(),
        **{k: str(v) for k, v in worker["environment"].items()},
        "GIFTWHEEL_WORKER__ALIVE_FILE": str(alive),
    }

    def check() -> subprocess.CompletedProcess[str]:
        argv = giftwheel_argv(*worker["healthcheck"]["test"][2:])
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=30, check=False)

    missing = check()
    assert missing.returncode == 1
    assert "does not exist" in missing.stderr
    alive.touch()
    assert check().returncode == 0
    stale = CloudSettings(mode="development").worker.alive_max_age_s + 1
    os.utime(alive, (alive.stat().st_atime - stale, alive.stat().st_mtime - stale))
    old = check()
    assert old.returncode == 1
    assert "stopped turning" in old.stderr
