"""The TikTok source end to end: real TikTokLive client (network replaced) -> real API -> Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from pytest_mock import MockerFixture

from cloud.sources.settings import TikTokSettings
from cloud.sources.tiktok import TikTokSource, load_library
from tests.sources.conftest import Rig
from tests.sources.replay import STREAMER, load_steps

# Skips this module when TikTokLive (the optional, AGPL `tiktok` extra) is not installed.
from tests.sources.tiktok_room import RecordedRoom, rate_limited


@asynccontextmanager
async def playing(
    rig: Rig, room: RecordedRoom, settings: TikTokSettings | None = None
) -> AsyncIterator[None]:
    library = load_library()
    source = TikTokSource(
        settings or rig.settings.tiktok,
        unique_id=STREAMER,
        pipeline=rig.pipeline,
        metrics=rig.metrics,
        clock=rig.clock,
        library=library.__class__(**{**library.__dict__, "new_client": room.new_client}),
        sleep=room.sleep,
    )
    tasks = [asyncio.create_task(source.run()), asyncio.create_task(rig.pipeline.sweep_forever(0.01))]
    try:
        await asyncio.wait_for(room.done.wait(), 20)
        await rig.settle()
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _summary(events: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return sorted((e["userName"], e["giftName"], e["quantity"]) for e in events)


async def test_a_streak_of_99_roses_is_one_event_of_99(rig: Rig, mocker: MockerFixture) -> None:
    room = RecordedRoom(load_steps("tiktoklive_rose_streak_99_end"), rig.clock, mocker)
    async with playing(rig, room):
        [event] = await rig.stored()
    assert event == {
        "v": 1,
        "eventId": "tiktok:6900000000000000001:5655:g1700000000001",
        "event": "gift",
        "platform": "tiktok",
        "userId": "6900000000000000001",
        "userName": "alice_01",
        "channel": STREAMER,
        "giftName": "Rose",
        "diamond": 1,
        "quantity": 99,
        "timestamp": 1_700_000_012_000,
    }
    assert rig.metric("giftwheel_source_frames_total") == 100
    assert rig.metric("giftwheel_source_gifts_total", how="end") == 1


async def test_a_streak_without_its_end_is_settled_by_the_timeout(rig: Rig, mocker: MockerFixture) -> None:
    room = RecordedRoom(load_steps("tiktoklive_rose_streak_99_no_end"), rig.clock, mocker)
    async with playing(rig, room):
        events = await rig.stored()
    assert _summary(events) == [("alice_01", "Rose", 99)]
    assert rig.metric("giftwheel_source_gifts_total", how="timeout") == 1


async def test_non_streakable_gifts_count_on_arrival(rig: Rig, mocker: MockerFixture) -> None:
    room = RecordedRoom(load_steps("tiktoklive_nonstreakable"), rig.clock, mocker)
    async with playing(rig, room):
        events = await rig.stored()
    assert _summary(events) == [
        ("bob.builds", "Galaxy", 1),
        ("bob.builds", "Galaxy", 1),
        ("bob.builds", "Perfume", 1),
        ("cara", "Lion", 1),
    ]
    assert sum(e["diamond"] * e["quantity"] for e in events) == 1000 + 1000 + 20 + 29_999


async def test_the_burst_replayed_after_a_reconnect_is_not_counted_again(
    rig: Rig, mocker: MockerFixture
) -> None:
    room = RecordedRoom(load_steps("tiktoklive_replay_after_reconnect"), rig.clock, mocker)
    async with playing(rig, room):
        events = await rig.stored()
    assert _summary(events) == [
        ("alice_01", "Rose", 5),
        ("bob.builds", "Galaxy", 1),
        ("bob.builds", "Lion", 1),
        ("cara", "GG", 7),
    ]
    assert rig.metric("giftwheel_source_replays_total") == 5
    assert rig.metric("giftwheel_source_reconnects_total") >= 1
    assert rig.metric("giftwheel_source_gap_seconds_count") == 1
    assert room.attempts == 2
    # The room id was scraped once; the reconnect reused it.
    assert sum(lookup.await_count for lookup in room.room_lookups) == 1


async def test_garbage_is_counted_and_good_gifts_around_it_still_arrive(
    rig: Rig, mocker: MockerFixture
) -> None:
    room = RecordedRoom(load_steps("tiktoklive_garbage"), rig.clock, mocker)
    async with playing(rig, room):
        events = await rig.stored()
    assert _summary(events) == [("bob.builds", "Perfume", 1), ("cara", "Perfume", 1)]
    # One payload the library could not parse (it drops it and logs), and two it "parsed" into
    # gifts without a gift (the JSON bytes become a nonsense message) that the adapter refuses.
    assert rig.metric("giftwheel_source_parse_failures_total", stage="library") == 1
    assert rig.metric("giftwheel_source_parse_failures_total", stage="adapter") == 2


async def test_a_sign_server_429_is_waited_out(rig: Rig, mocker: MockerFixture) -> None:
    room = RecordedRoom(load_steps("tiktoklive_nonstreakable"), rig.clock, mocker)
    room.sessions.insert(0, rate_limited(retry_after_s=42))
    async with playing(rig, room):
        events = await rig.stored()
    assert len(events) == 4
    assert room.sleeps[:2] == [0.0, 42.0]
    assert rig.metric("giftwheel_source_sign_rate_limited_total") == 1
    assert rig.metric("giftwheel_source_sign_calls_total") == 2


async def test_the_sign_budget_spaces_out_connection_starts(rig: Rig, mocker: MockerFixture) -> None:
    # Four sessions that end at once: the budget of 2 starts a minute makes the third one wait.
    room = RecordedRoom([{"disconnect": True}] * 3, rig.clock, mocker)
    settings = TikTokSettings(budget={"per_minute": 2}, backoff={"initial_s": 1, "max_s": 1})
    async with playing(rig, room, settings):
        pass
    waits = [s for s in room.sleeps if s > 1]
    assert len(waits) >= 1
    assert all(50 < s <= 60 for s in waits)
    assert rig.metric("giftwheel_source_sign_calls_total") == 4


async def test_an_offline_room_is_checked_again_later(rig: Rig, mocker: MockerFixture) -> None:
    room = RecordedRoom(load_steps("tiktoklive_nonstreakable"), rig.clock, mocker)
    room.sessions.insert(0, None)
    async with playing(rig, room):
        events = await rig.stored()
    assert len(events) == 4
    assert room.sleeps[0] == rig.settings.tiktok.offline_retry_s


async def test_a_failing_gift_handler_costs_one_gift_not_the_connection(
    rig: Rig, mocker: MockerFixture
) -> None:
    room = RecordedRoom(load_steps("tiktoklive_nonstreakable"), rig.clock, mocker)
    handle = rig.pipeline.handle
    calls = iter([RuntimeError("bug"), None, None, None])

    def flaky(adapter: Any, payload: dict[str, Any]) -> None:
        error = next(calls)
        if error is not None:
            raise error
        handle(adapter, payload)

    mocker.patch.object(rig.pipeline, "handle", flaky)
    async with playing(rig, room):
        events = await rig.stored()
    assert len(events) == 3
    assert room.attempts == 1
    assert rig.metric("giftwheel_source_parse_failures_total", stage="handler") == 1
