"""The overlay page in a real headless Chromium (Debian's), against a real `giftwheel api` process
and a real Redis: gifts and telemetry go in through the API's own routes."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, Page, ViewportSize, async_playwright

from cloud.ledger.store import Ledger
from devstack.api_process import ApiProcess
from devstack.ports import free_port
from devstack.redis_server import RedisServer
from tests.feedback.conftest import FEEDBACK_SECRET, Api, known_motors, ledger, new_command, progress
from tests.ingest.conftest import API_KEY

__all__ = ["known_motors", "ledger"]  # the feedback tests' fixtures, used here too

CHROMIUM = Path("/usr/bin/chromium")  # installed by scripts/setup; never `playwright install`
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DOCS = Path(__file__).resolve().parents[2] / "docs"
LANDSCAPE = ViewportSize(width=1920, height=1080)
PORTRAIT = ViewportSize(width=1080, height=1920)

OpenPage = Callable[..., Awaitable[Page]]


def save_screenshot(taken: Path, name: str) -> None:
    """Screenshots land in docs/ only when asked: UPDATE_SCREENSHOTS=1 (not GIFTWHEEL_...: the API
    refuses GIFTWHEEL_ variables it does not know)."""
    if os.environ.get("UPDATE_SCREENSHOTS"):
        shutil.copy(taken, DOCS / name)


@pytest.fixture
def api_process(redis_server: RedisServer, known_motors: None) -> Iterator[ApiProcess]:
    env = {
        "GIFTWHEEL_REDIS_URL": redis_server.url,
        "GIFTWHEEL_API_KEYS": API_KEY,
        "GIFTWHEEL_FEEDBACK__SECRET": FEEDBACK_SECRET,
        # Every progress update published as it comes: the tests pace them.
        "GIFTWHEEL_REALTIME__PROGRESS_PUBLISH_INTERVAL_S": "0",
        # Gifts announced up to 500/s (50 by default), so a burst of 1,000 reaches the page in 2 s,
        # not 20: the page's own pacing and bounds are what the tests check.
        "GIFTWHEEL_REALTIME__ANNOUNCE_MAX_PER_S": "500",
    }
    with ApiProcess(env, port=free_port()) as api:
        yield api


@pytest.fixture
async def api(api_process: ApiProcess) -> AsyncIterator[Api]:
    async with httpx.AsyncClient(base_url=api_process.url, timeout=10) as client:
        yield Api(api_process.url, client)


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing: run ./scripts/setup (it installs Debian's chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


@pytest.fixture
async def open_overlay(browser: Browser, api_process: ApiProcess) -> AsyncIterator[OpenPage]:
    """A fresh browser profile per call (its own localStorage), the overlay open and connected.

    Every console error and refused CSP directive fails the test that opened the page, except a
    refused WebSocket connection: the page reconnects by itself while the API restarts."""
    errors: list[str] = []

    async def open_page(
        query: str = "", viewport: ViewportSize | None = None, *, init_script: str = "", **context: Any
    ) -> Page:
        made = await browser.new_context(viewport=viewport or LANDSCAPE, **context)
        if init_script:  # runs before the page's own scripts, on every load (CDP: not under the CSP)
            await made.add_init_script(init_script)
        page = await made.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{api_process.url}/overlay{query}")
        await page.wait_for_selector('#status[data-state="open"]', timeout=10_000)
        return page

    yield open_page
    assert [e for e in errors if not e.startswith("WebSocket connection to")] == []


async def start_command(
    api: Api, ledger: Ledger, event_id: str, rounds: int, device: str = "motor_01"
) -> str:
    """The worker's part for one gift: its command in the ledger; its commandId, as the edge reports it."""
    return (await new_command(ledger, event_id, rounds, device)).command_id


async def report(
    api: Api, command_id: str, done: int, rounds: int, *, device: str = "motor_01", ts_ms: int | None = None
) -> None:
    """The motor's telemetry for ``done`` of ``rounds`` rounds, as the rule chain posts it."""
    response = await api.post_feedback(
        progress(done, rounds, command_id=command_id), device=device, ts_ms=ts_ms
    )
    assert response.status_code == 200, response.text


async def until(page: Page, expression: str, timeout_s: float = 10.0) -> None:
    """Poll a JavaScript expression until it is truthy (page.wait_for_function evaluates a string,
    which the overlay's CSP refuses)."""
    async with asyncio.timeout(timeout_s):
        while not await page.evaluate(expression):  # noqa: ASYNC110 (the page is polled, nothing to wait on)
            await asyncio.sleep(0.05)


def wheel_sampler(selector: str) -> str:
    """An init script: every animation frame, [Date.now(), shown rounds, reported rounds] of the
    wheel ``selector`` picks, kept in window.samples."""
    return f"""
window.samples = [];
const sample = () => {{
  const wheel = document.querySelector('{selector}');
  if (wheel) window.samples.push(
    [Date.now(), Number(wheel.dataset.shownRounds), Number(wheel.dataset.reportedRounds)]);
  requestAnimationFrame(sample);
}};
requestAnimationFrame(sample);
"""
