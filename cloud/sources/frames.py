"""GiftFrame: one gift message as a source reports it, before streak counting (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GiftFrame:
    """The fields giftwheel needs from one TikTok gift message, whichever library delivered it.

    Ids stay strings: TikTok's are 64-bit and JSON consumers (JavaScript) cannot hold them as
    numbers. ``repeat_count`` of a streakable gift is the running total of the streak so far.
    """

    platform: str
    user_id: str
    user_name: str | None
    channel: str | None
    gift_id: str
    gift_name: str
    diamond: int
    repeat_count: int
    repeat_end: bool
    streakable: bool
    group_id: str | None
    msg_id: str | None
    order_id: str | None
    # When TikTok created the message (ms); None when the payload does not say.
    timestamp_ms: int | None
