"""Wire contracts shared by cloud and edge: models, names and bounds; no I/O, no imports of ours."""

from giftwheel.contracts.gift import (
    CONTRACT_VERSION,
    GiftBounds,
    GiftEvent,
    GiftEventIn,
    GiftRejected,
    Problem,
    bound_violations,
    derive_event_id,
    normalise,
    parse_gift,
    parse_gift_item,
    problems_of,
)
from giftwheel.contracts.streams import (
    DEDUPE_MARK,
    EVENT_FIELD,
    EVENTS_STREAM,
    WORKER_GROUP,
    dedupe_key,
    event_stream,
    event_streams,
    shard_of,
)

__all__ = [
    "CONTRACT_VERSION",
    "DEDUPE_MARK",
    "EVENTS_STREAM",
    "EVENT_FIELD",
    "WORKER_GROUP",
    "GiftBounds",
    "GiftEvent",
    "GiftEventIn",
    "GiftRejected",
    "Problem",
    "bound_violations",
    "dedupe_key",
    "derive_event_id",
    "event_stream",
    "event_streams",
    "normalise",
    "parse_gift",
    "parse_gift_item",
    "problems_of",
    "shard_of",
]
