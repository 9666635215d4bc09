"""The wheel turns with the real motor: checked against telemetry injected through the feedback
webhook, frame by frame, in Chromium."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cloud.ledger.store import Ledger
from giftwheel.contracts.motor import command_id_for
from tests.feedback.conftest import Api
from tests.overlay.conftest import OpenPage, report, start_command, wheel_sampler

pytestmark = pytest.mark.slow

WHEEL = '.wheel[data-device="motor_01"]'
SAMPLER = wheel_sampler(WHEEL)
REPORT_EVERY_MS = 500


async def test_the_wheel_math(open_overlay: OpenPage) -> None:
    page = await open_overlay()
    ids = [["tiktok:a"], ["tiktok:2", "tiktok:1"], ["Tuấn 🎁:1"]]
    got: dict[str, Any] = await page.evaluate(
        """async (ids) => {
          const w = await import('/overlay/wheel.js');
          return {
            chase: w.advanceShown(2, 3, 0.5, 0.25),
            capped: w.advanceShown(2.9, 3, 0.5, 1),
            behind: w.advanceShown(0, 4, 1, 0.5),
            unknownSpeed: w.advanceShown(1, 3, 0, 0.1),
            overshot: w.advanceShown(5, 3, 1, 0.1),
            angle: w.angleOf(2.25),
            fromJoin: w.secondsPerRound(0, {secondsPerRound: 0.8}, null),
            fromEta: w.secondsPerRound(0, {etaS: 3, queuedRounds: 6}, null),
            estimated: w.secondsPerRound(0, {commandId: 'c', commandRoundsDone: 3, ts: 3000},
                                            {commandId: 'c', commandRoundsDone: 1, ts: 2000}),
            smoothed: w.secondsPerRound(1, {commandId: 'c', commandRoundsDone: 2, ts: 2000},
                                           {commandId: 'c', commandRoundsDone: 1, ts: 0}),
            otherCommand: w.secondsPerRound(1, {commandId: 'c', commandRoundsDone: 3, ts: 3000},
                                               {commandId: 'd', commandRoundsDone: 1, ts: 0}),
            ids: await Promise.all(ids.map(w.commandIdFor)),
          };
        }""",
        ids,
    )
    assert got["chase"] == 2.5  # one round per 0.5 s, for 0.25 s
    assert got["capped"] == 3  # never past the report
    assert got["behind"] == 2  # 4 rounds behind: 4x the speed
    assert got["unknownSpeed"] == 3
    assert got["overshot"] == 3
    assert got["angle"] == 90
    assert got["fromJoin"] == 0.8
    assert got["fromEta"] == 0.5
    assert got["estimated"] == 0.5
    assert got["smoothed"] == 1.5
    assert got["otherCommand"] == 1
    assert got["ids"] == [command_id_for(i) for i in ids]


def never_ahead(samples: list[list[float]], sent: list[tuple[float, int]]) -> None:
    """No frame shows more rounds than the telemetry posted before that frame."""
    for at_ms, shown, _ in samples:
        reported = max((rounds for sent_ms, rounds in sent if sent_ms <= at_ms), default=0)
        assert shown <= reported, (at_ms, shown, sent)


async def test_the_wheel_turns_between_reports_never_ahead_and_lands_on_done(
    open_overlay: OpenPage, api: Api, ledger: Ledger
) -> None:
    page = await open_overlay(init_script=SAMPLER)
    command_id = await start_command(api, ledger, "tiktok:wheel-1", 6)
    sent: list[tuple[float, int]] = []
    start_ms = int(time.time() * 1000)
    for done in range(1, 6):
        sent.append((time.time() * 1000, done))
        await report(api, command_id, done, 6, ts_ms=start_ms + done * REPORT_EVERY_MS)
        await asyncio.sleep(REPORT_EVERY_MS / 1000)
    await page.wait_for_selector(f'{WHEEL}[data-shown-rounds="5"]')
    samples: list[list[float]] = await page.evaluate("window.samples")
    never_ahead(samples, sent)
    turning = [shown for _, shown, _ in samples if not float(shown).is_integer()]
    assert len(turning) > 20, "the wheel jumped from report to report instead of turning"
    assert sorted(turning) == [
        shown for _, shown, _ in samples if not float(shown).is_integer()
    ]  # forwards only

    sent.append((time.time() * 1000, 6))
    await report(api, command_id, 6, 6, ts_ms=start_ms + 6 * REPORT_EVERY_MS)
    await page.wait_for_selector(f'{WHEEL}.done[data-shown-rounds="6"][data-reported-rounds="6"]')
    never_ahead(await page.evaluate("window.samples"), sent)
    assert await page.eval_on_selector(f"{WHEEL} .rotor", "r => r.style.transform") == "rotate(0deg)"


async def test_a_reload_mid_command_resumes_where_the_motor_is(
    open_overlay: OpenPage, api: Api, ledger: Ledger
) -> None:
    assert (
        await api.post_gift(eventId="tiktok:reload-1", userName="Ada", giftName="Lion")
    ).status_code == 202
    command_id = await start_command(api, ledger, "tiktok:reload-1", 10)
    page = await open_overlay(init_script=SAMPLER)
    start_ms = int(time.time() * 1000)
    for done in range(1, 5):
        await report(api, command_id, done, 10, ts_ms=start_ms + done * REPORT_EVERY_MS)
        await asyncio.sleep(0.2)
    await page.wait_for_selector(f'{WHEEL}[data-shown-rounds="4"]')

    await page.reload()
    await page.wait_for_selector('#status[data-state="open"]')
    await page.wait_for_selector(f'{WHEEL}[data-shown-rounds="4"]')
    # From its first frame after the reload the wheel is at round 4, not turning up from 0.
    assert {shown for _, shown, _ in await page.evaluate("window.samples")} == {4}
    assert await page.inner_text(f"{WHEEL} .for") == "for Ada · Lion"
    assert "4 / 10 rounds" in await page.inner_text(f"{WHEEL} .rounds")

    await report(api, command_id, 5, 10, ts_ms=start_ms + 5 * REPORT_EVERY_MS)
    await page.wait_for_selector(f'{WHEEL}[data-shown-rounds="5"]')


async def test_reduced_motion_shows_each_report_without_turning(
    open_overlay: OpenPage, api: Api, ledger: Ledger
) -> None:
    page = await open_overlay("?alert_s=30", init_script=SAMPLER, reduced_motion="reduce")
    command_id = await start_command(api, ledger, "tiktok:calm-1", 4)
    start_ms = int(time.time() * 1000)
    for done in range(1, 4):
        await report(api, command_id, done, 4, ts_ms=start_ms + done * REPORT_EVERY_MS)
        await page.wait_for_selector(f'{WHEEL}[data-shown-rounds="{done}"]')
    assert all(float(shown).is_integer() for _, shown, _ in await page.evaluate("window.samples"))
    await api.post_gift(eventId="tiktok:calm-gift", userName="Bo", giftName="Rose")
    alert = await page.wait_for_selector(".alert")
    assert alert is not None
    assert await alert.evaluate("a => getComputedStyle(a).animationName") == "none"


async def test_a_refreshed_page_does_not_queue_gifts_turned_before_it_opened(
    open_overlay: OpenPage, api: Api, ledger: Ledger
) -> None:
    for n in (1, 2):
        assert (await api.post_gift(eventId=f"tiktok:old-{n}", userName="Ada")).status_code == 202
    command_id = await start_command(api, ledger, "tiktok:old-1", 2)
    # Done and idle, reported 3 s after the gifts (the second was coalesced elsewhere, say).
    await report(api, command_id, 2, 2, ts_ms=int(time.time() * 1000) + 3_000)
    page = await open_overlay()
    await page.wait_for_selector(f'{WHEEL}.done[data-shown-rounds="2"]')
    assert await page.locator(".queued-gift").count() == 0
    assert not await page.is_visible("#queue")
