"""Adapters: the recorded TikTokLive and TikFinity shapes in, the same GiftFrames out."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloud.sources.adapters import frame_from_connector, frame_from_tiktoklive
from cloud.sources.frames import GiftFrame
from giftwheel.contracts import GiftRejected
from tests.sources.replay import STREAMER, gift_payloads, load_steps

SEQUENCES = ["rose_streak_99_end", "rose_streak_99_no_end", "nonstreakable", "replay_after_reconnect"]


def _tikfinity_gifts(name: str) -> list[dict[str, Any]]:
    frames = [orjson.loads(s["frame"]) for s in load_steps(f"tikfinity_{name}") if "frame" in s]
    return [frame["data"] for frame in frames if frame["event"] == "gift"]


def test_a_streak_step_from_tiktoklive() -> None:
    first, *_, last = gift_payloads("tiktoklive_rose_streak_99_end")
    assert frame_from_tiktoklive(first, channel=STREAMER) == GiftFrame(
        platform="tiktok",
        user_id="6900000000000000001",
        user_name="alice_01",
        channel=STREAMER,
        gift_id="5655",
        gift_name="Rose",
        diamond=1,
        repeat_count=1,
        repeat_end=False,
        streakable=True,
        group_id="1700000000001",
        msg_id="7301000000000000001",
        order_id=None,
        timestamp_ms=1_700_000_000_120,
    )
    end = frame_from_tiktoklive(last)
    assert (end.repeat_count, end.repeat_end, end.streakable) == (99, True, True)


def test_a_non_streakable_gift_from_tiktoklive() -> None:
    galaxy = frame_from_tiktoklive(gift_payloads("tiktoklive_nonstreakable")[0])
    assert (galaxy.gift_name, galaxy.diamond, galaxy.streakable, galaxy.group_id) == (
        "Galaxy",
        1000,
        False,
        None,
    )
    assert galaxy.repeat_count == 1


@pytest.mark.parametrize("name", SEQUENCES)
def test_tikfinity_and_tiktoklive_agree_on_every_recorded_gift(name: str) -> None:
    direct = [frame_from_tiktoklive(p, channel=STREAMER) for p in gift_payloads(f"tiktoklive_{name}")]
    bridged = [frame_from_connector(d) for d in _tikfinity_gifts(name)]
    assert direct == bridged
    assert len(direct) > 0


def test_older_connector_shape_with_combo_fields_under_gift() -> None:
    data = {
        "giftId": 5655,
        "userId": "42",
        "uniqueId": "zed",
        "giftName": "Rose",
        "diamondCount": 1,
        "msgId": "9",
        "createTime": "1700000000000",
        "gift": {"gift_id": 5655, "repeat_count": 4, "repeat_end": 1, "gift_type": 1},
        "repeatCount": 4,
    }
    frame = frame_from_connector(data)
    assert (frame.streakable, frame.repeat_end, frame.repeat_count) == (True, True, 4)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"common": {"msgId": "1"}, "user": {"id": "5"}, "gift": {"name": "Rose", "type": 1}}, "giftId"),
        ({"repeatCount": "many", "gift": ["Rose"]}, "gift"),
        ({"user": {"id": "5"}, "gift": {"id": "1", "diamondCount": 1}}, "gift.name"),
        ({"user": {}, "gift": {"id": "1", "name": "Rose", "diamondCount": 1}}, "user.id"),
        (
            {"user": {"id": "5"}, "repeatEnd": "yes", "gift": {"id": "1", "name": "R", "diamondCount": 1}},
            "repeatEnd",
        ),
    ],
)
def test_unreadable_tiktoklive_payloads_name_the_field(payload: dict[str, Any], field: str) -> None:
    with pytest.raises(GiftRejected) as info:
        frame_from_tiktoklive(payload)
    assert [p.field for p in info.value.problems] == [field]


def test_the_recorded_garbage_gifts_are_refused() -> None:
    garbage = [step["garbage_gift"] for step in load_steps("tiktoklive_garbage") if "garbage_gift" in step]
    assert len(garbage) == 2
    for payload in garbage:
        with pytest.raises(GiftRejected):
            frame_from_tiktoklive(payload)
        with pytest.raises(GiftRejected):
            frame_from_connector(payload)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)
_keys = st.sampled_from(
    [
        "common",
        "user",
        "gift",
        "giftId",
        "repeatCount",
        "repeatEnd",
        "groupId",
        "orderId",
        "msgId",
        "id",
        "name",
        "type",
        "diamondCount",
        "displayId",
        "createTime",
        "userId",
        "giftName",
        "giftType",
        "uniqueId",
    ]
)
_payloads = st.recursive(
    st.dictionaries(_keys, _json, max_size=8),
    lambda inner: st.dictionaries(_keys, inner | _json, max_size=8),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None)
@given(payload=_payloads)
def test_any_payload_gives_a_frame_or_a_clear_refusal(payload: dict[str, Any]) -> None:
    for adapter in (frame_from_tiktoklive, frame_from_connector):
        outcome: GiftFrame | GiftRejected
        try:
            outcome = adapter(payload)
        except GiftRejected as exc:
            outcome = exc
        if isinstance(outcome, GiftRejected):
            assert outcome.problems
        else:
            assert outcome.diamond >= 1
            assert outcome.repeat_count >= 1
