"""Property tests of parse_gift: every valid event passes intact, every out-of-bounds value is named."""

from __future__ import annotations

import contextlib
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from giftwheel.contracts import (
    GiftBounds,
    GiftEvent,
    GiftRejected,
    derive_event_id,
    parse_gift,
    parse_gift_item,
)
from giftwheel.contracts.gift import GiftEventIn

NOW_MS = 1_800_000_000_000
BOUNDS = GiftBounds()

texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=64)
valid_events = st.fixed_dictionaries(
    {
        "event": st.just("gift"),
        "platform": st.from_regex(r"\A[a-z][a-z0-9_-]{0,31}\Z"),
        "userId": texts,
        "giftName": texts,
        "diamond": st.integers(1, BOUNDS.diamond_max),
        "quantity": st.integers(1, BOUNDS.quantity_max),
        "timestamp": st.integers(NOW_MS - BOUNDS.timestamp_max_age_s * 1000, NOW_MS),
    },
    optional={
        "eventId": st.from_regex(r"\A[A-Za-z0-9:._@/-]{1,128}\Z"),
        "userName": texts,
        "channel": texts,
    },
)


@given(valid_events)
def test_valid_events_pass_and_round_trip(raw: dict[str, Any]) -> None:
    event = parse_gift(orjson.dumps(raw), BOUNDS, NOW_MS)
    assert event.diamond == raw["diamond"]
    assert event.rounds == raw["diamond"] * raw["quantity"]
    assert GiftEvent.model_validate_json(event.to_json()) == event
    if "eventId" in raw:
        assert event.event_id == raw["eventId"]
    else:
        assert event.event_id == derive_event_id(GiftEventIn.model_validate(raw))


@given(valid_events)
def test_derived_ids_are_stable_across_key_order(raw: dict[str, Any]) -> None:
    raw.pop("eventId", None)
    reordered = dict(reversed(list(raw.items())))
    first = parse_gift(orjson.dumps(raw), BOUNDS, NOW_MS)
    second = parse_gift(orjson.dumps(reordered), BOUNDS, NOW_MS)
    assert first.event_id == second.event_id


out_of_bounds = st.one_of(
    st.tuples(st.just("diamond"), st.integers(BOUNDS.diamond_max + 1, 10**12)),
    st.tuples(st.just("diamond"), st.integers(-(10**12), 0)),
    st.tuples(st.just("quantity"), st.integers(BOUNDS.quantity_max + 1, 10**12)),
    st.tuples(st.just("quantity"), st.integers(-(10**12), 0)),
    st.tuples(st.just("userId"), st.text(min_size=BOUNDS.user_id_max_len + 1, max_size=2000)),
    st.tuples(st.just("giftName"), st.text(min_size=BOUNDS.gift_name_max_len + 1, max_size=2000)),
    st.tuples(st.just("timestamp"), st.integers(NOW_MS + 300_001, 10**15)),
    st.tuples(st.just("timestamp"), st.integers(-(10**12), NOW_MS - 86_400_001)),
    st.tuples(st.just("diamond"), st.one_of(st.floats(), st.text(), st.booleans(), st.none())),
    st.tuples(st.just("event"), st.text().filter(lambda t: t != "gift")),
)


@given(valid_events, out_of_bounds)
def test_out_of_bounds_values_are_rejected_by_name(raw: dict[str, Any], bad: tuple[str, object]) -> None:
    field, value = bad
    raw[field] = value
    with pytest.raises(GiftRejected) as rejected:
        parse_gift(orjson.dumps(raw), BOUNDS, NOW_MS)
    assert field in {p.field for p in rejected.value.problems}


@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(body: bytes) -> None:
    with contextlib.suppress(GiftRejected):
        parse_gift(body, BOUNDS, NOW_MS)


def test_bounds_are_settings() -> None:
    tight = GiftBounds(diamond_max=5)
    raw = {"event": "gift", "platform": "x", "userId": "u", "giftName": "g", "diamond": 6,
           "timestamp": NOW_MS}  # fmt: skip
    with pytest.raises(GiftRejected, match="diamond: must be <= 5"):
        parse_gift_item(raw, tight, NOW_MS)
    assert parse_gift_item(raw, BOUNDS, NOW_MS).diamond == 6
