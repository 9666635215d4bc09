"""The control room in a real headless Chromium against the whole local stack (real processes:
API, a worker, the ThingsBoard emulator with the shipped chain, the edge on simulated motors).

The control room's scenario: log in, stop a turning motor and see it stop in the edge's step record, hold,
send gifts, resume, every gift turned exactly once, the ledger balances, the audit holds it all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page
from redis.asyncio import Redis

from cloud.ledger import CommandState, Ledger
from devstack.stack import LocalStack
from giftwheel.contracts import EVENTS_STREAM
from tests.control.test_control_e2e import (
    MAIN,
    SMALL,
    balanced,
    commands_of,
    motor,
    send_gifts,
    still,
    wait_states,
)
from tests.local_stack import cloud, stack, stack_options
from tests.overlay.conftest import LANDSCAPE, save_screenshot, until
from tests.waiting import wait_until

__all__ = ["cloud", "stack", "stack_options"]  # the module's local stack and its cloud Redis
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@pytest.fixture
async def page(browser: Browser, stack: LocalStack) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport=LANDSCAPE)
    opened = await context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda e: errors.append(str(e)))
    opened.on(
        "console", lambda m: errors.append(m.text) if m.type == "error" and "401" not in m.text else None
    )
    opened.on("dialog", lambda dialog: dialog.accept())  # the page asks before a stop or a cancel
    await opened.goto(f"{stack.api.url}/console")
    yield opened
    await context.close()
    assert errors == []


async def log_in(page: Page, user: str, password: str) -> None:
    await page.wait_for_selector("#login-form", state="visible")
    await page.fill("#login-user", user)
    await page.fill("#login-password", password)
    await page.click("#login-form button[type=submit]")


def row(device: str) -> str:
    """The JavaScript for a motor's row on the page."""
    return f"document.querySelector('#motors tr[data-device=\"{device}\"]')"


async def press(page: Page, device: str, action: str) -> None:
    await page.click(f'#motors tr[data-device="{device}"] button[data-action="{action}"]')
    await until(
        page, f"document.getElementById('outcome').textContent.startsWith('{action} {device}: done')", 60
    )


async def test_a_wrong_password_is_refused_on_the_page(page: Page, stack: LocalStack) -> None:
    await log_in(page, stack.options.console_user, "not the password")
    await until(page, "document.getElementById('login-error').textContent === 'wrong user or password'")
    assert await page.is_hidden("#room")


async def test_stop_hold_resume_from_the_page(page: Page, stack: LocalStack, cloud: Redis) -> None:
    ledger = Ledger(cloud, streams=[EVENTS_STREAM], ttl_s=3600)
    await log_in(page, stack.options.console_user, stack.options.console_password)
    await page.wait_for_selector("#room", state="visible")

    # A turning motor, stopped from the page: the edge's step record stops growing, its work is cancelled.
    before = await still(stack, MAIN)
    (turning,) = await send_gifts(stack, MAIN, [1500])
    await wait_until(lambda: stack.rounds_turned(motor(stack, MAIN)) > before + 50, 30, "the motor turning")
    await until(page, f"{row(MAIN)} !== null")
    await press(page, MAIN, "stop")
    halted = await still(stack, MAIN)
    assert before + 50 < halted < before + 1500
    [stopped] = await commands_of(ledger, [turning])
    assert stopped.state is CommandState.CANCELLED
    await until(page, f"{row(MAIN)}.dataset.state === 'held'")

    # Hold the other motor, send gifts: recorded held, nothing turns; resume: each turns exactly once.
    small_before = await still(stack, SMALL)
    await until(page, f"{row(SMALL)} !== null", 30)
    await press(page, SMALL, "hold")
    await until(page, f"{row(SMALL)}.dataset.state === 'held'")
    gifts = await send_gifts(stack, SMALL, [2, 3, 4])
    held = await wait_states(ledger, gifts, CommandState.HELD, "the gifts recorded held")
    assert await still(stack, SMALL) == small_before
    await press(page, SMALL, "resume")
    done = await wait_states(ledger, gifts, CommandState.DONE, "the held gifts turned")
    assert {c.command_id for c in done} == {c.command_id for c in held}
    assert await still(stack, SMALL) == small_before + 9
    await press(page, MAIN, "resume")
    assert await still(stack, MAIN) == halted  # the stopped command never turns again
    await until(page, f"{row(SMALL)}.dataset.state !== 'held'")
    for device in (MAIN, SMALL):
        assert balanced(await ledger.device_totals(device)), device

    # The fleet status on the page: each motor's ledger rounds (its name's title), its last done.
    for device in (MAIN, SMALL):
        t = await ledger.device_totals(device)
        title = (
            f"ledger rounds: {t.accepted} accepted, {t.done} done, {t.held} held, {t.cancelled} cancelled, "
            f"{t.failed} failed, {t.outstanding} outstanding"
        )
        await until(page, f"{row(device)}.querySelector('td.name').title === '{title}'")
    await until(page, f"{row(SMALL)}.querySelector('td.last').textContent.endsWith(' ago')")
    await until(page, "document.getElementById('fig-lag').textContent === '0.0 s'")  # every gift handled

    # The audit, on the page too: who did what, and the result.
    await page.click("#test-form button[type=submit]")
    await until(page, "document.getElementById('test-result').textContent.startsWith('accepted: test:')")
    await until(page, "document.querySelectorAll('#audit li').length >= 6")
    shown = await page.eval_on_selector_all("#audit li .what", "items => items.map(i => i.textContent)")
    assert shown[:6] == [
        "test-gift",
        f"control.resume {MAIN}",
        f"control.resume {SMALL}",
        f"control.hold {SMALL}",
        f"control.stop {MAIN}",
        "login",
    ]
    taken = Path(stack.workdir) / "console.png"
    await page.screenshot(path=str(taken), full_page=True)
    save_screenshot(taken, "console.png")
