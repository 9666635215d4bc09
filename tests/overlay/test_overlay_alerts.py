"""Alerts, the goal bar and the top gifters, driven by real gifts through the ingest API; each part
off by the URL; a burst of 1,000 gifts shown in turn and summarised, the page's DOM and queue bounded."""

from __future__ import annotations

import pytest
from playwright.async_api import Page

from cloud.ledger.store import Ledger
from tests.feedback.conftest import Api, gift
from tests.ingest.conftest import API_KEY
from tests.overlay.conftest import OpenPage, report, start_command, until

pytestmark = pytest.mark.slow

# Records every alert the page puts up, and the most the alert box and its queue ever held.
ALERT_RECORDER = """
window.alertsShown = [];
window.alertsMost = {children: 0, waiting: 0};
addEventListener('DOMContentLoaded', () => {
  const box = document.getElementById('alerts');
  new MutationObserver(() => {
    const most = window.alertsMost;
    most.children = Math.max(most.children, box.children.length);
    most.waiting = Math.max(most.waiting, Number(box.dataset.waiting || 0));
    for (const alert of box.children) {
      const id = alert.dataset.eventId ?? 'summary:' + alert.dataset.gifts;
      if (window.alertsShown.at(-1) !== id) window.alertsShown.push(id);
    }
  }).observe(box, {childList: true, attributes: true});
});
"""
SCENE = [
    ("tiktok:alert-1", "Ada", "Lion", 29, 1),
    ("tiktok:alert-2", "Bo", "Rose", 1, 5),
    ("tiktok:alert-3", "Ada", "Rose", 1, 10),
    ("tiktok:alert-4", "Cy", "Galaxy", 10, 2),
    ("tiktok:alert-5", '<img src=x onerror="document.title=1">', "<script>x</script>", 1, 1),
]


async def post_scene(api: Api) -> None:
    for event_id, user, name, diamond, quantity in SCENE:
        response = await api.post_gift(
            eventId=event_id, userName=user, giftName=name, diamond=diamond, quantity=quantity
        )
        assert response.status_code == 202


async def leaders(page: Page) -> list[list[str]]:
    found: list[list[str]] = await page.eval_on_selector_all(
        ".leader", "items => items.map(i => [i.querySelector('.who').textContent, i.dataset.diamonds])"
    )
    return found


async def test_real_gifts_drive_alerts_goal_and_top_gifters_and_survive_a_reload(
    open_overlay: OpenPage, api: Api
) -> None:
    page = await open_overlay("?goal=100&alert_s=0.5&top=3", init_script=ALERT_RECORDER)
    await post_scene(api)
    await until(page, "window.alertsShown.length >= 5")
    assert await page.evaluate("window.alertsShown") == [event_id for event_id, *_ in SCENE]
    assert await page.evaluate("window.alertsMost.children") == 1

    assert await leaders(page) == [["Ada", "39"], ["Cy", "20"], ["Bo", "5"]]
    await page.wait_for_selector('#goal[data-value="65"]')
    assert await page.inner_text("#goal-text") == "Goal: 65 / 100 diamonds"
    assert await page.eval_on_selector("#goal-fill", "f => f.style.width") == "65%"
    # What a viewer typed stays text: no element was made of it, no script ran.
    assert await page.evaluate("document.querySelectorAll('img, #alerts script').length") == 0
    assert await page.title() == "giftwheel overlay"

    await page.wait_for_timeout(1_200)  # the session is saved within a second of its last change
    await page.reload()
    await page.wait_for_selector('#status[data-state="open"]')
    await page.wait_for_selector('#goal[data-value="65"]')  # not 0, and not 130 from the replayed gifts
    assert await leaders(page) == [["Ada", "39"], ["Cy", "20"], ["Bo", "5"]]
    assert await page.evaluate("window.alertsShown") == []  # old gifts are not alerted again


async def test_the_goal_in_rounds_counts_each_finished_command_once(
    open_overlay: OpenPage, api: Api, ledger: Ledger
) -> None:
    page = await open_overlay("?goal=10&unit=rounds&lang=vi")
    command_id = await start_command(api, ledger, "tiktok:goal-1", 6)
    await report(api, command_id, 6, 6)
    await page.wait_for_selector('#goal[data-value="6"]')
    assert await page.inner_text("#goal-text") == "Mục tiêu: 6 / 10 vòng"
    await page.reload()  # the join state replays the done: counted once
    await page.wait_for_selector('#status[data-state="open"]')
    await page.wait_for_timeout(300)
    assert await page.get_attribute("#goal", "data-value") == "6"


async def test_each_part_can_be_turned_off_in_the_url(
    open_overlay: OpenPage, api: Api, ledger: Ledger
) -> None:
    page = await open_overlay("?alerts=0&leaderboard=0&queue=0&wheel=off")
    await post_scene(api)
    command_id = await start_command(api, ledger, "tiktok:alert-1", 29)
    await report(api, command_id, 1, 29)
    await page.wait_for_selector(".wheel", state="attached")
    await page.wait_for_timeout(500)
    for part in ("#alerts .alert", "#leaderboard", "#queue", "#wheels", "#goal"):  # no goal= : no goal bar
        assert not await page.is_visible(part), part


async def test_a_burst_of_a_thousand_gifts_is_shown_in_turn_then_summarised_with_bounded_memory(
    open_overlay: OpenPage, api: Api
) -> None:
    page = await open_overlay("?alert_s=0.5&goal=100000", init_script=ALERT_RECORDER)
    cdp = await page.context.new_cdp_session(page)

    async def heap_and_nodes() -> tuple[int, int]:
        await cdp.send("HeapProfiler.collectGarbage")
        used = (await cdp.send("Runtime.getHeapUsage"))["usedSize"]
        return used, await page.evaluate("document.getElementsByTagName('*').length")

    heap_before, nodes_before = await heap_and_nodes()
    burst = [
        gift(eventId=f"tiktok:burst-{i}", userName=f"viewer {i % 50}", giftName="Rose", diamond=1, quantity=1)
        for i in range(1_000)
    ]
    response = await api.client.post(
        "/v1/events/batch", json={"events": burst}, headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status_code == 200, response.text
    # The API announces at most realtime.announce_max_per_s gifts a second (500 in these tests, 50
    # by default); 60 s leaves room for a loaded box.
    await page.wait_for_selector('#goal[data-value="1000"]', timeout=60_000)
    await until(page, "window.alertsShown.some(id => id.startsWith('summary:'))", timeout_s=30)

    shown: list[str] = await page.evaluate("window.alertsShown")
    singles = [i for i in shown if not i.startswith("summary:")]
    summaries = [int(i.removeprefix("summary:")) for i in shown if i.startswith("summary:")]
    assert len(set(singles)) == len(singles)  # each at most once, in the order they came
    assert singles == sorted(singles, key=lambda i: int(i.rsplit("-", 1)[1]))
    assert len(singles) + sum(summaries) == 1_000
    most = await page.evaluate("window.alertsMost")
    assert most == {"children": 1, "waiting": 20}
    assert f"+{summaries[0]}" in await page.inner_text(".alert.summary")

    heap_after, nodes_after = await heap_and_nodes()
    assert nodes_after - nodes_before < 60  # the top 5 and the queue's 5, not a node per gift
    assert heap_after - heap_before < 4 * 2**20, (heap_before, heap_after)
    print(f"1,000 gifts: heap {heap_before} -> {heap_after} bytes, DOM {nodes_before} -> {nodes_after} nodes")
