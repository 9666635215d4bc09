"""Event ids from TikTok's own ids, so a gift keeps its id however often it is delivered.

Whichever source reports a gift (TikTokLive directly or TikFinity), the id is the same, so two
sources watching one room can run side by side and the ingest API counts each gift once.

- one message (non-streakable gift): ``tiktok:<user>:<gift>:m<msgId>`` (``o<orderId>`` when
  the message id is missing, a digest of the message's fields when both are);
- a streak: ``tiktok:<user>:<gift>:g<groupId>``: TikTok gives every step of one combo the same
  group id, so the closing message, a replay of it and a timeout settlement all share the id;
- the rest of a streak that went on after it was settled: ``<streak id>:from<count settled>``.
"""

from __future__ import annotations

import hashlib
import re

from cloud.sources.frames import GiftFrame

_SAFE = re.compile(r"^[A-Za-z0-9._-]{1,40}$")


def _token(value: str) -> str:
    """The id itself when it is short and plain, else a digest (eventIds have a fixed alphabet)."""
    if _SAFE.match(value):
        return value
    return hashlib.sha256(value.encode()).hexdigest()[:24]


def _prefix(frame: GiftFrame) -> str:
    return f"{frame.platform}:{_token(frame.user_id)}:{_token(frame.gift_id)}"


def message_event_id(frame: GiftFrame) -> str:
    if frame.msg_id:
        return f"{_prefix(frame)}:m{_token(frame.msg_id)}"
    if frame.order_id:
        return f"{_prefix(frame)}:o{_token(frame.order_id)}"
    fields = f"{frame.repeat_count}|{frame.timestamp_ms}|{frame.group_id}|{frame.channel}"
    return f"{_prefix(frame)}:h{hashlib.sha256(fields.encode()).hexdigest()[:24]}"


def streak_event_id(frame: GiftFrame) -> str | None:
    """The id shared by every step of a streak; None when TikTok sent no group id."""
    if frame.group_id is None:
        return None
    return f"{_prefix(frame)}:g{_token(frame.group_id)}"


def remainder_event_id(streak_id: str, settled: int) -> str:
    return f"{streak_id}:from{settled}"
