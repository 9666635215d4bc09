"""The wheel with a real motor: the whole local stack (API, worker, ThingsBoard emulator with the
shipped rule chain, edge daemon with a simulated motor), a gift sent to the API, the overlay in
Chromium."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser

from devstack.edge_process import DEFAULT_MOTORS
from devstack.stack import LocalStack, StackOptions
from tests.ingest.conftest import gift
from tests.overlay.conftest import LANDSCAPE, wheel_sampler
from tests.waiting import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

MOTOR = DEFAULT_MOTORS[0]  # the demo rules send a Lion to motor_01
WHEEL = f'.wheel[data-device="{MOTOR.name}"]'
ROUNDS = 30  # about 3 s of turning at time_scale 1


async def test_the_wheel_follows_a_real_motor_and_stops_on_the_rounds_it_turned(
    tmp_path: Path, browser: Browser
) -> None:
    with LocalStack(tmp_path, StackOptions(workers=1, time_scale=1)) as stack:
        context = await browser.new_context(viewport=LANDSCAPE)
        await context.add_init_script(wheel_sampler(WHEEL))
        page = await context.new_page()
        await page.goto(f"{stack.api.url}/overlay?alert_s=1")
        await page.wait_for_selector('#status[data-state="open"]', timeout=10_000)

        event = gift(
            eventId="tiktok:stack-1", userName="Lan Anh", giftName="Lion", diamond=ROUNDS, quantity=1
        )
        async with httpx.AsyncClient(base_url=stack.api.url, timeout=10) as client:
            headers = {"Authorization": f"Bearer {stack.options.api_key}"}
            assert (await client.post("/v1/events", json=event, headers=headers)).status_code == 202
        await page.wait_for_selector('.alert[data-event-id="tiktok:stack-1"]', timeout=5_000)
        # Who it turns for: the page found the gift whose eventId hashes to the worker's commandId.
        await page.wait_for_selector(f"{WHEEL} .for:text('Lan Anh')", timeout=30_000)
        await page.wait_for_selector(f'{WHEEL}.done[data-shown-rounds="{ROUNDS}"]', timeout=60_000)

        await wait_until(lambda: stack.rounds_turned(MOTOR) >= ROUNDS, 10, "the edge recorded every step")
        assert stack.rounds_turned(MOTOR) == ROUNDS
        samples: list[list[float]] = await page.evaluate("window.samples")
        assert all(shown <= reported for _, shown, reported in samples)
        shown = [s for _, s, _ in samples]
        assert shown == sorted(shown)  # forwards only
        assert any(not float(s).is_integer() for s in shown), "the wheel jumped instead of turning"
        await context.close()
