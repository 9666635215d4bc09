"""Themes: three built-in looks, and CSS variables a streamer overrides in OBS's Custom CSS field,
which OBS applies as a <style> element it adds once the page has loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloud.ledger.store import Ledger
from tests.feedback.conftest import Api
from tests.overlay.conftest import OpenPage, save_screenshot
from tests.overlay.test_overlay_layouts import STREAM_BACKDROP, send_the_scene

pytestmark = pytest.mark.slow

THEMES = ["neon", "pastel", "minimal"]
# What OBS runs after load for a browser source's Custom CSS (obs-browser, browser-client.cpp,
# OnLoadEnd): a <style> element with the text, appended to <head>.
OBS_CUSTOM_CSS = """css => {
  const obsCSS = document.createElement('style');
  obsCSS.id = 'obsBrowserCustomStyle';
  obsCSS.textContent = css;
  document.querySelector('head').appendChild(obsCSS);
}"""
LOOK = """() => {
  const css = (selector, property) => getComputedStyle(document.querySelector(selector))[property];
  return [css('.segment.s0', 'fill'), css('.alert', 'backgroundImage'), css('body', 'fontFamily'),
          css('#leaderboard', 'borderTopLeftRadius')];
}"""


async def test_each_theme_has_its_own_look(
    open_overlay: OpenPage, api: Api, ledger: Ledger, tmp_path: Path
) -> None:
    pages = [
        await open_overlay(f"?theme={theme}&goal=100&alert_s=30", {"width": 960, "height": 540})
        for theme in THEMES
    ]
    await send_the_scene(api, ledger)
    looks = []
    for theme, page in zip(THEMES, pages, strict=True):
        await page.wait_for_selector(".alert")
        await page.wait_for_selector('.leader[data-rank="3"]')
        assert await page.get_attribute("html", "data-theme") == theme
        looks.append(tuple(await page.evaluate(LOOK)))
        await page.evaluate(STREAM_BACKDROP)
        await page.wait_for_timeout(700)
        await page.screenshot(path=tmp_path / f"{theme}.png")
        save_screenshot(tmp_path / f"{theme}.png", f"overlay-theme-{theme}.png")
    assert len(set(looks)) == len(THEMES)


async def test_obs_custom_css_overrides_the_variables(
    open_overlay: OpenPage, api: Api, ledger: Ledger
) -> None:
    page = await open_overlay("?theme=pastel&alert_s=30")
    await send_the_scene(api, ledger)
    await page.wait_for_selector(".alert")
    await page.evaluate(
        OBS_CUSTOM_CSS,
        ":root { --wheel-1: rgb(1, 2, 3); --radius: 0px; --font: monospace; }"
        " #leaderboard { display: none; }",
    )
    fill, _, font, radius = await page.evaluate(LOOK)
    assert fill == "rgb(1, 2, 3)"
    assert font == "monospace"
    assert radius == "0px"
    assert not await page.is_visible("#leaderboard")
    # open_overlay fails the test on any console error: the CSP applied the <style> without complaint.
