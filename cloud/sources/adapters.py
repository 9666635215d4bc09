"""Source payloads in, GiftFrames out: pure functions over decoded JSON, one per known shape.

- ``frame_from_tiktoklive``: the dict of a TikTokLive (v7) ``GiftEvent`` as its own serialiser
  writes it, ``event.to_dict()``: camelCase keys, 64-bit ints as strings, defaults left out
  (so a missing ``repeatEnd`` is 0 and a missing ``gift.type`` is 0).
- ``frame_from_connector``: the ``data`` of a TikTok-Live-Connector ``gift`` event, which is also
  what TikFinity's local WebSocket publishes inside ``{"event": "gift", "data": {...}}``.

Every refusal is a GiftRejected naming the field and the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cloud.sources.frames import GiftFrame
from giftwheel.contracts import GiftRejected, Problem

TIKTOK = "tiktok"
# TikTok's gift type 1 is the "streakable" combo gift (TikTokLive ExtendedGift.streakable).
STREAKABLE_GIFT_TYPE = 1


def _problem(field: str, reason: str) -> GiftRejected:
    return GiftRejected([Problem(field, reason)])


def _mapping(data: Mapping[str, Any], key: str, field: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _problem(field, f"expected an object, got {type(value).__name__}")
    return value


def _int(data: Mapping[str, Any], key: str, field: str, *, default: int | None = None) -> int:
    value = data.get(key, default)
    # bool is an int in Python; a boolean where a number belongs is a shape error.
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.removeprefix("-").isdecimal():
        return int(value)
    if value is None:
        raise _problem(field, "missing")
    raise _problem(field, f"expected an integer, got {value!r:.40}")


def _id(data: Mapping[str, Any], key: str, field: str, *, required: bool = False) -> str | None:
    """An id as text; TikTok's "0" or "" mean "none"."""
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int | str):
        if value is None and not required:
            return None
        raise _problem(field, "missing" if value is None else f"expected an id, got {value!r:.40}")
    text = str(value).strip()
    if text in ("", "0"):
        if required:
            raise _problem(field, "missing")
        return None
    return text


def _text(data: Mapping[str, Any], key: str, field: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if value is not None and not isinstance(value, str):
        raise _problem(field, f"expected text, got {type(value).__name__}")
    if required:
        raise _problem(field, "missing")
    return None


def _flag(data: Mapping[str, Any], key: str, field: str) -> bool:
    value = data.get(key, 0)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    raise _problem(field, f"expected a flag, got {value!r:.40}")


def _positive_diamond(value: int, field: str) -> int:
    if value < 1:
        raise _problem(field, f"gift worth {value} diamonds carries no value")
    return value


def frame_from_tiktoklive(payload: Mapping[str, Any], *, channel: str | None = None) -> GiftFrame:
    """Adapt ``TikTokLive.events.GiftEvent.to_dict()`` (TikTokLive 7.x, TikTokLiveProto v3)."""
    common = _mapping(payload, "common", "common")
    user = _mapping(payload, "user", "user")
    gift = _mapping(payload, "gift", "gift")
    if not gift:
        raise _problem("gift", "missing")
    gift_id = _id(gift, "id", "gift.id") or _id(payload, "giftId", "giftId", required=True)
    created = common.get("createTime")
    return GiftFrame(
        platform=TIKTOK,
        user_id=str(_id(user, "id", "user.id", required=True)),
        user_name=_text(user, "displayId", "user.displayId") or _text(user, "nickname", "user.nickname"),
        channel=channel,
        gift_id=str(gift_id),
        gift_name=str(_text(gift, "name", "gift.name", required=True)),
        diamond=_positive_diamond(_int(gift, "diamondCount", "gift.diamondCount", default=0), "gift"),
        repeat_count=max(_int(payload, "repeatCount", "repeatCount", default=0), 1),
        repeat_end=_flag(payload, "repeatEnd", "repeatEnd"),
        streakable=_int(gift, "type", "gift.type", default=0) == STREAKABLE_GIFT_TYPE,
        group_id=_id(payload, "groupId", "groupId"),
        msg_id=_id(common, "msgId", "common.msgId"),
        order_id=_id(payload, "orderId", "orderId"),
        timestamp_ms=None if created is None else _int(common, "createTime", "common.createTime") or None,
    )


def frame_from_connector(data: Mapping[str, Any], *, channel: str | None = None) -> GiftFrame:
    """Adapt a TikTok-Live-Connector ``gift`` event's data (TikFinity's WebSocket feed)."""
    # Older connector versions keep the combo fields under "gift" with snake_case names.
    legacy = _mapping(data, "gift", "gift")
    gift_type = data.get("giftType", legacy.get("gift_type", 0))
    repeat_end = data["repeatEnd"] if "repeatEnd" in data else legacy.get("repeat_end", 0)
    created = data.get("createTime", data.get("timestamp"))
    return GiftFrame(
        platform=TIKTOK,
        user_id=str(_id(data, "userId", "userId", required=True)),
        user_name=_text(data, "uniqueId", "uniqueId") or _text(data, "nickname", "nickname"),
        channel=channel or _text(data, "tikfinityUsername", "tikfinityUsername"),
        gift_id=str(_id(data, "giftId", "giftId", required=True)),
        gift_name=str(_text(data, "giftName", "giftName", required=True)),
        diamond=_positive_diamond(_int(data, "diamondCount", "diamondCount", default=0), "diamondCount"),
        repeat_count=max(_int(data, "repeatCount", "repeatCount", default=1), 1),
        repeat_end=_flag({"repeatEnd": repeat_end}, "repeatEnd", "repeatEnd"),
        streakable=_int({"giftType": gift_type}, "giftType", "giftType") == STREAKABLE_GIFT_TYPE,
        group_id=_id(data, "groupId", "groupId"),
        msg_id=_id(data, "msgId", "msgId"),
        order_id=_id(data, "orderId", "orderId"),
        timestamp_ms=None if created is None else _int({"t": created}, "t", "createTime") or None,
    )
