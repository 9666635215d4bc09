"""The overlay page in a real headless Chromium (Debian's), against a real `giftwheel api` process."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, async_playwright

from cloud.ledger.store import Ledger
from devstack.api_process import ApiProcess
from devstack.ports import free_port
from devstack.redis_server import RedisServer
from tests.feedback.conftest import FEEDBACK_SECRET, STREAM, Api, new_command, progress
from tests.ingest.conftest import API_KEY

pytestmark = pytest.mark.slow

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
SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "overlay.png"


@pytest.fixture
def api_process(redis_server: RedisServer, known_motors: None) -> Iterator[ApiProcess]:
    env = {
        "GIFTWHEEL_REDIS_URL": redis_server.url,
        "GIFTWHEEL_API_KEYS": API_KEY,
        "GIFTWHEEL_FEEDBACK__SECRET": FEEDBACK_SECRET,
    }
    with ApiProcess(env, port=free_port()) as api:
        yield api


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail("chromium is missing: run ./scripts/setup (it installs Debian's chromium)")
    return CHROMIUM


@pytest.fixture
async def browser(chromium: Path, tmp_path: Path) -> AsyncIterator[BrowserContext]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            tmp_path / "profile",  # a fresh user-data-dir per test
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 520, "height": 420},
        )
        yield context
        await context.close()


async def motor_done_count(page: Page, device: str) -> str | None:
    return await page.get_attribute(f'.motor[data-device="{device}"]', "data-done")


async def test_overlay_shows_gifts_and_progress_and_recovers_after_an_api_restart(
    api_process: ApiProcess, browser: BrowserContext, tmp_path: Path
) -> None:
    page = await browser.new_page()
    await page.goto(f"{api_process.url}/overlay")
    await page.wait_for_selector('#status[data-state="open"]', timeout=10_000)
    assert await page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgba(0, 0, 0, 0)"

    async with httpx.AsyncClient(base_url=api_process.url, timeout=10) as client:
        api = Api(api_process.url, client)
        assert (
            await api.post_gift(eventId="tiktok:browser-1", userName="Ada", giftName="Lion")
        ).status_code == 202
        gift = await page.wait_for_selector('.gift[data-event-id="tiktok:browser-1"]', timeout=5_000)
        assert gift is not None
        assert "Ada" in await gift.inner_text()

        widths = []
        for done in (1, 2):
            await api.post_feedback(progress(done, 4))
            await page.wait_for_selector(f'.motor[data-device="motor_01"][data-done="{done}"]', timeout=5_000)
            widths.append(await page.eval_on_selector(".bar-fill", "el => el.style.width"))
        assert widths == ["25%", "50%"]
        numbers = await page.inner_text('.motor[data-device="motor_01"] .numbers')
        assert "2 / 4 rounds" in numbers
        assert "2 queued" in numbers

        await api.post_gift(eventId="tiktok:browser-2", userName="Bo", giftName="Rose", quantity=3)
        await api.post_feedback(progress(3, 10), device="motor_02")
        await page.wait_for_selector('.motor[data-device="motor_02"][data-done="3"]', timeout=5_000)
        await page.wait_for_selector('.gift[data-event-id="tiktok:browser-2"]', timeout=5_000)
        # The stream, for the picture; set from script, as the page's CSP refuses inline style tags.
        await page.evaluate("document.documentElement.style.background = '#1f2430'")
        await page.wait_for_timeout(600)  # let the bar and list animations settle
        await page.screenshot(path=tmp_path / "overlay.png")
        if os.environ.get("GIFTWHEEL_UPDATE_SCREENSHOT"):
            shutil.copy(tmp_path / "overlay.png", SCREENSHOT)

        api_process.stop()
        await page.wait_for_selector('#status[data-state="closed"]', timeout=10_000)
        api_process.start()
        await page.wait_for_selector('#status[data-state="open"]', timeout=15_000)

        await api.post_feedback(progress(4, 4))
        await page.wait_for_selector('.motor.done[data-device="motor_01"][data-done="4"]', timeout=5_000)
    assert await motor_done_count(page, "motor_01") == "4"


async def test_a_recovered_done_finishes_only_the_bar_still_showing_its_command(
    api_process: ApiProcess, ledger: Ledger, browser: BrowserContext
) -> None:
    stuck, later = [await new_command(ledger, f"tiktok:{name}", 4) for name in ("stuck", "later")]
    page = await browser.new_page()
    await page.goto(f"{api_process.url}/overlay")
    await page.wait_for_selector('#status[data-state="open"]', timeout=10_000)
    async with httpx.AsyncClient(base_url=api_process.url, timeout=10) as client:
        api = Api(api_process.url, client)
        # The bar stops at 3 / 4: the done report of `stuck` never arrived.
        await api.post_feedback(progress(3, 4, command_id=stuck.command_id))
        await page.wait_for_selector('.motor[data-device="motor_01"][data-done="3"]', timeout=5_000)
        await api.post_feedback({"state": "idle", "recentDone": [stuck.command_id]})
        await page.wait_for_selector('.motor.done[data-device="motor_01"][data-done="4"]', timeout=5_000)

        # The motor moved on to `later`; a heartbeat recovering an older done leaves that bar alone.
        await api.post_feedback(progress(1, 4, command_id=later.command_id))
        await page.wait_for_selector('.motor[data-device="motor_01"][data-done="1"]', timeout=5_000)
        await ledger.mark_failed(STREAM, stuck.command_id, "reopened for the test")
        await api.post_feedback({"recentDone": [stuck.command_id]})
        await page.wait_for_timeout(500)
        assert await motor_done_count(page, "motor_01") == "1"
        assert not await page.is_visible('.motor.done[data-device="motor_01"]')
