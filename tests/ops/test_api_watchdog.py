"""`giftwheel api` under systemd's notify protocol and watchdog (devstack/notify_supervisor.py plays
systemd): READY=1 once /healthz answers, WATCHDOG=1 while it does, and a hung API (SIGSTOP) is killed
and started again."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from cloud.api.liveness import probe_url
from devstack.notify_supervisor import NotifySupervisor
from devstack.ports import free_port
from devstack.processes import giftwheel_argv
from devstack.redis_server import RedisServer
from tests.waiting import wait_until

WATCHDOG_S = 2.0

pytestmark = pytest.mark.slow


def test_the_probe_asks_loopback_for_a_wildcard_listener() -> None:
    assert probe_url("0.0.0.0", 8000) == "http://127.0.0.1:8000/healthz"
    assert probe_url("::", 8000) == "http://[::1]:8000/healthz"
    assert probe_url("10.0.0.5", 8000) == "http://10.0.0.5:8000/healthz"


async def test_a_hung_api_is_restarted_by_its_watchdog(redis_server: RedisServer, tmp_path: Path) -> None:
    port = free_port()
    env = {"GIFTWHEEL_MODE": "development", "GIFTWHEEL_REDIS_URL": redis_server.url}
    api = NotifySupervisor(
        "api",
        giftwheel_argv("api", "--port", str(port), "--workers", "1"),
        log_dir=tmp_path,
        env=env,
        watchdog_s=WATCHDOG_S,
        restart_s=0.5,
    )
    url = probe_url("127.0.0.1", port)
    async with httpx.AsyncClient() as client:
        with api:
            await wait_until(lambda: bool(api.seen("ready")), timeout_s=30, what="READY=1 from the API")
            assert (await client.get(url)).status_code == 200  # READY=1 came after /healthz answered
            first = api.main_pid
            assert first is not None
            await asyncio.sleep(2 * WATCHDOG_S)
            assert api.seen("watchdog") == [], "a healthy API missed its watchdog"
            os.kill(first, signal.SIGSTOP)
            await wait_until(lambda: bool(api.seen("watchdog", first)), timeout_s=20, what="watchdog")
            await wait_until(lambda: len(api.seen("ready")) == 2, timeout_s=30, what="restarted, READY=1")
            assert api.main_pid != first
            assert (await client.get(url)).status_code == 200
