"""OBS-ready: each layout and language renders inside its browser source, transparent, without
scrollbars, configured by its URL alone (screenshots: docs/overlay-<layout>-<lang>.png)."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import ViewportSize

from cloud.ledger.store import Ledger
from tests.feedback.conftest import Api
from tests.overlay.conftest import LANDSCAPE, PORTRAIT, OpenPage, report, save_screenshot, start_command

pytestmark = pytest.mark.slow

PARTS = ["#goal", "#alerts", "#wheels", "#queue", "#leaderboard"]
# A stream frame behind the transparent page, for the picture only (set from script: the CSP
# refuses inline style attributes in markup, not the CSSOM).
STREAM_BACKDROP = "document.documentElement.style.background = '#3b4560'"


async def send_the_scene(api: Api, ledger: Ledger) -> None:
    """Three viewers' gifts through the ingest API; the wheel turning the first one."""
    gifts = [
        ("tiktok:scene-1", "Lan Anh", "Lion", 29, 1),
        ("tiktok:scene-2", "Minh <b>Tuấn</b>", "Rose", 1, 5),
        ("tiktok:scene-3", "Ada", "Galaxy", 10, 2),
    ]
    for event_id, user, gift, diamond, quantity in gifts:
        response = await api.post_gift(
            eventId=event_id, userName=user, giftName=gift, diamond=diamond, quantity=quantity
        )
        assert response.status_code == 202
    command_id = await start_command(api, ledger, "tiktok:scene-1", 29)
    await report(api, command_id, 12, 29)


@pytest.mark.parametrize(("layout", "viewport"), [("landscape", LANDSCAPE), ("portrait", PORTRAIT)])
@pytest.mark.parametrize("lang", ["en", "vi"])
async def test_each_layout_and_language_fits_its_source(
    open_overlay: OpenPage,
    api: Api,
    ledger: Ledger,
    tmp_path: Path,
    layout: str,
    viewport: ViewportSize,
    lang: str,
) -> None:
    page = await open_overlay(f"?lang={lang}&goal=100&alert_s=30", viewport)
    await send_the_scene(api, ledger)
    await page.wait_for_selector('.wheel[data-device="motor_01"][data-shown-rounds="12"] .for:not(:empty)')
    await page.wait_for_selector('.leader[data-rank="3"]')
    await page.wait_for_selector(".alert")

    assert await page.get_attribute("html", "lang") == lang
    assert await page.get_attribute("html", "data-layout") == layout
    assert await page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgba(0, 0, 0, 0)"
    scroll = await page.evaluate(
        "const d = document.documentElement; [d.scrollWidth, d.scrollHeight, innerWidth, innerHeight]"
    )
    assert scroll == [viewport["width"], viewport["height"], viewport["width"], viewport["height"]]
    for part in PARTS:
        box = await page.locator(part).bounding_box()
        assert box is not None, part
        assert box["x"] >= 0, part
        assert box["y"] >= 0, part
        assert box["x"] + box["width"] <= viewport["width"], part
        assert box["y"] + box["height"] <= viewport["height"], part

    words = {"en": ("rounds", "Goal", "Top gifters"), "vi": ("vòng", "Mục tiêu", "Top người tặng quà")}[lang]
    assert words[0] in await page.inner_text(".wheel .rounds")
    assert words[1] in await page.inner_text("#goal")
    assert words[2] in (await page.text_content("#leaderboard") or "")
    # The gift the wheel turns for has left the queue; the two after it wait, in order.
    queued = await page.eval_on_selector_all(".queued-gift", "items => items.map(i => i.dataset.eventId)")
    assert queued == ["tiktok:scene-2", "tiktok:scene-3"]
    # A name is text, whatever it holds.
    assert await page.locator(".leader .who", has_text="Minh <b>Tuấn</b>").count() == 1

    await page.evaluate(STREAM_BACKDROP)
    await page.wait_for_timeout(700)  # the alert's entrance and the goal bar's transition
    shot = tmp_path / "shot.png"
    await page.screenshot(path=shot)
    save_screenshot(shot, f"overlay-{layout}-{lang}.png")


async def test_the_language_follows_the_browser_without_lang_in_the_url(open_overlay: OpenPage) -> None:
    vietnamese = await open_overlay("", locale="vi-VN")
    assert await vietnamese.get_attribute("html", "lang") == "vi"
    assert await vietnamese.inner_text("#status-text") == "trực tiếp"
    unknown = await open_overlay("", locale="fr-FR")  # no table: English
    assert await unknown.get_attribute("html", "lang") == "en"
    assert await unknown.inner_text("#status-text") == "live"


async def test_the_url_is_the_whole_configuration_and_survives_a_reload(open_overlay: OpenPage) -> None:
    page = await open_overlay("?layout=portrait&scale=1.5&theme=minimal&lang=vi", LANDSCAPE)
    for _ in range(2):
        assert await page.get_attribute("html", "data-layout") == "portrait"
        assert await page.get_attribute("html", "data-theme") == "minimal"
        # 1.5 x 16 px at 1080 px wide, here the height (1080) is the portrait frame's width x 1920/1080.
        font = await page.evaluate("parseFloat(getComputedStyle(document.documentElement).fontSize)")
        assert font == pytest.approx(1.5 * 16 * 1080 / 1920, rel=0.01)
        await page.reload()
        await page.wait_for_selector('#status[data-state="open"]')
