"""StreakTracker: streaks count once at their end (or timeout), replays never count again."""

from __future__ import annotations

import dataclasses

from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.sources.adapters import frame_from_tiktoklive
from cloud.sources.frames import GiftFrame
from cloud.sources.settings import StreakSettings
from cloud.sources.streaks import Counted, StreakTracker
from giftwheel.clock import ManualClock
from tests.sources.replay import STREAMER, gift_payloads

ALICE_ROSES = "tiktok:6900000000000000001:5655:g"


def _frames(name: str) -> list[GiftFrame]:
    return [frame_from_tiktoklive(p, channel=STREAMER) for p in gift_payloads(name)]


def _feed(tracker: StreakTracker, frames: list[GiftFrame]) -> list[Counted]:
    counted: list[Counted] = []
    for frame in frames:
        counted += tracker.observe(frame).counted
    return counted


def _tracker(clock: ManualClock, **overrides: float) -> StreakTracker:
    return StreakTracker(clock, StreakSettings(timeout_s=15.0, **overrides))


def test_a_streak_of_99_roses_counts_once_at_its_end() -> None:
    tracker = _tracker(ManualClock())
    frames = _frames("tiktoklive_rose_streak_99_end")
    assert len(frames) == 100
    assert _feed(tracker, frames[:-1]) == []
    [counted] = tracker.observe(frames[-1]).counted
    assert counted.how == "end"
    assert counted.event.quantity == 99
    assert counted.event.event_id == ALICE_ROSES + "1700000000001"
    assert (counted.event.gift_name, counted.event.diamond, counted.event.channel) == ("Rose", 1, STREAMER)
    assert counted.event.timestamp == frames[-1].timestamp_ms
    assert tracker.open_streaks == 0


def test_a_streak_whose_end_never_comes_settles_after_the_timeout_with_the_highest_count() -> None:
    clock = ManualClock()
    tracker = _tracker(clock)
    assert _feed(tracker, _frames("tiktoklive_rose_streak_99_no_end")) == []
    clock.advance(14.9)
    assert tracker.expire() == []
    clock.advance(0.1)
    [counted] = tracker.expire()
    assert (counted.how, counted.event.quantity) == ("timeout", 99)
    assert counted.event.event_id == ALICE_ROSES + "1700000000002"
    assert tracker.expire() == []


def test_steps_keep_a_streak_alive() -> None:
    clock = ManualClock()
    tracker = _tracker(clock)
    for frame in _frames("tiktoklive_rose_streak_99_no_end")[:10]:
        clock.advance(10)
        assert tracker.observe(frame).counted == []
        assert tracker.expire() == []


def test_a_streak_that_goes_on_after_its_timeout_counts_only_the_rest() -> None:
    clock = ManualClock()
    tracker = _tracker(clock)
    frames = _frames("tiktoklive_rose_streak_99_no_end")
    _feed(tracker, frames[:50])
    clock.advance(15)
    [first] = tracker.expire()
    assert first.event.quantity == 50
    # The rest arrives late: steps 51..99, then the end at 99.
    late = _feed(tracker, frames[50:])
    end = dataclasses.replace(frames[-1], repeat_end=True, msg_id="7301000000000009999")
    [rest] = late + tracker.observe(end).counted
    assert (rest.how, rest.event.quantity) == ("end", 49)
    assert rest.event.event_id == f"{first.event.event_id}:from50"


def test_replayed_steps_of_a_counted_streak_count_nothing() -> None:
    tracker = _tracker(ManualClock())
    frames = _frames("tiktoklive_rose_streak_99_end")
    assert len(_feed(tracker, frames)) == 1
    for frame in frames[-10:]:
        observation = tracker.observe(frame)
        assert (observation.counted, observation.replay) == ([], True)
    assert tracker.open_streaks == 0


def test_non_streakable_gifts_count_on_arrival_once_each() -> None:
    tracker = _tracker(ManualClock())
    frames = _frames("tiktoklive_nonstreakable")
    counted = _feed(tracker, frames)
    assert [(c.how, c.event.gift_name, c.event.quantity) for c in counted] == [
        ("arrival", "Galaxy", 1),
        ("arrival", "Lion", 1),
        ("arrival", "Perfume", 1),
        ("arrival", "Galaxy", 1),
    ]
    assert len({c.event.event_id for c in counted}) == 4
    assert all(tracker.observe(f).replay for f in frames)


def test_the_replayed_burst_after_a_reconnect_counts_only_what_is_new() -> None:
    tracker = _tracker(ManualClock())
    counted = _feed(tracker, _frames("tiktoklive_replay_after_reconnect"))
    assert sorted((c.event.user_id[-1], c.event.gift_name, c.event.quantity) for c in counted) == [
        ("1", "Rose", 5),
        ("2", "Galaxy", 1),
        ("2", "Lion", 1),
        ("3", "GG", 7),
    ]


def test_a_streak_without_group_id_is_named_by_its_closing_message() -> None:
    tracker = _tracker(ManualClock())
    frames = [dataclasses.replace(f, group_id=None) for f in _frames("tiktoklive_rose_streak_99_end")]
    [counted] = _feed(tracker, frames)
    assert counted.event.event_id == "tiktok:6900000000000000001:5655:m" + str(frames[-1].msg_id)
    assert counted.event.quantity == 99


def test_memory_is_bounded() -> None:
    tracker = _tracker(ManualClock(), remember_max=2)
    frames = _frames("tiktoklive_nonstreakable")
    _feed(tracker, frames[:3])
    # The first message has been forgotten: only the ingest API's dedupe would catch it now.
    assert not tracker.observe(frames[0]).replay
    assert tracker.observe(frames[2]).replay


def test_memory_forgets_after_remember_s() -> None:
    clock = ManualClock()
    tracker = _tracker(clock, remember_s=60)
    galaxy = _frames("tiktoklive_nonstreakable")[0]
    tracker.observe(galaxy)
    clock.advance(59)
    assert tracker.observe(galaxy).replay
    clock.advance(61)
    assert not tracker.observe(galaxy).replay


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    streaks=st.lists(st.tuples(st.integers(1, 3), st.integers(1, 30), st.booleans()), min_size=1, max_size=6),
)
def test_any_interleaving_with_replays_counts_each_streak_once(
    data: st.DataObject, streaks: list[tuple[int, int, bool]]
) -> None:
    """Streaks of several users, steps interleaved, some steps replayed, some ends lost."""
    clock = ManualClock()
    tracker = _tracker(clock)
    template = _frames("tiktoklive_rose_streak_99_end")[0]
    queues: list[list[GiftFrame]] = []
    for index, (user, length, has_end) in enumerate(streaks):
        steps = [
            dataclasses.replace(
                template, user_id=str(user), group_id=str(index + 1), repeat_count=n, msg_id=f"{index}-{n}"
            )
            for n in range(1, length + 1)
        ]
        if has_end:
            steps.append(dataclasses.replace(steps[-1], repeat_end=True, msg_id=f"{index}-end"))
        queues.append(steps)
    counted: list[Counted] = []
    seen: list[GiftFrame] = []
    while any(queues):
        queue = data.draw(st.sampled_from([q for q in queues if q]))
        frame = queue.pop(0)
        seen.append(frame)
        counted += tracker.observe(frame).counted
        if data.draw(st.booleans()):
            counted += tracker.observe(data.draw(st.sampled_from(seen))).counted
    clock.advance(15)
    counted += tracker.expire()
    totals: dict[str, int] = {}
    for item in counted:
        streak = str(item.event.event_id).split(":g")[1].split(":")[0]
        totals[streak] = totals.get(streak, 0) + item.event.quantity
    assert totals == {str(i + 1): length for i, (_, length, _) in enumerate(streaks)}


def test_open_streaks_are_settled_at_shutdown_with_what_was_seen() -> None:
    tracker = _tracker(ManualClock())
    _feed(tracker, _frames("tiktoklive_rose_streak_99_no_end")[:42])
    [counted] = tracker.settle_all()
    assert (counted.how, counted.event.quantity) == ("shutdown", 42)
    assert tracker.open_streaks == 0
    assert tracker.expire() == []
