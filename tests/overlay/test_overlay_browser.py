"""The overlay keeps up with the API: it reconnects after a restart and resyncs from the join
state, and a recovered done finishes only the wheel still showing its command."""

from __future__ import annotations

import pytest

from cloud.ledger.store import Ledger
from devstack.api_process import ApiProcess
from tests.feedback.conftest import STREAM, Api, new_command, progress
from tests.overlay.conftest import OpenPage

pytestmark = pytest.mark.slow

WHEEL = '.wheel[data-device="motor_01"]'


async def test_the_overlay_reconnects_after_an_api_restart_and_resyncs(
    open_overlay: OpenPage, api_process: ApiProcess, api: Api, ledger: Ledger
) -> None:
    page = await open_overlay("?alert_s=0.5")
    await api.post_gift(eventId="tiktok:browser-1", userName="Ada", giftName="Lion")
    await page.wait_for_selector('.alert[data-event-id="tiktok:browser-1"]')
    command = await new_command(ledger, "tiktok:browser-1", 4)
    await api.post_feedback(progress(2, 4, command_id=command.command_id))
    await page.wait_for_selector(f'{WHEEL}[data-reported-rounds="2"]')

    api_process.stop()
    await page.wait_for_selector('#status[data-state="closed"]', timeout=10_000)
    api_process.start()
    await page.wait_for_selector('#status[data-state="open"]', timeout=15_000)

    await api.post_feedback(progress(4, 4, command_id=command.command_id))
    await page.wait_for_selector(f'{WHEEL}.done[data-shown-rounds="4"]')
    # The gift is counted once, though the join state after the restart replayed it.
    assert await page.get_attribute(".leader", "data-diamonds") == "1"


async def test_a_recovered_done_finishes_only_the_wheel_still_showing_its_command(
    open_overlay: OpenPage, api: Api, ledger: Ledger
) -> None:
    stuck, later = [await new_command(ledger, f"tiktok:{name}", 4) for name in ("stuck", "later")]
    page = await open_overlay()
    # The wheel stops at 3 / 4: the done report of `stuck` never arrived.
    await api.post_feedback(progress(3, 4, command_id=stuck.command_id))
    await page.wait_for_selector(f'{WHEEL}[data-reported-rounds="3"]')
    await api.post_feedback({"state": "idle", "recentDone": [stuck.command_id]})
    await page.wait_for_selector(f'{WHEEL}.done[data-shown-rounds="4"]')

    # The motor moved on to `later`; a heartbeat recovering an older done leaves that wheel alone.
    await api.post_feedback(progress(1, 4, command_id=later.command_id))
    await page.wait_for_selector(f'{WHEEL}[data-reported-rounds="1"]')
    await ledger.mark_failed(STREAM, stuck.command_id, "reopened for the test")
    await api.post_feedback({"recentDone": [stuck.command_id]})
    await page.wait_for_timeout(500)
    assert await page.get_attribute(WHEEL, "data-reported-rounds") == "1"
    assert await page.get_attribute(WHEEL, "data-command-id") == later.command_id
    assert not await page.is_visible(f"{WHEEL}.done")
