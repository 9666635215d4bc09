"""Counting TikTok gifts exactly once: streaks at their end, everything else on arrival.

A streakable gift (type 1) arrives once per combo step with a growing ``repeat_count`` and once
more with ``repeat_end`` set; only that last count is real. The tracker keeps the open streaks
and settles each one when its end arrives, or ``timeout_s`` after its last step when the end is
lost, with the highest count seen. It remembers what it has counted (bounded), so the burst of
recent messages TikTok replays after a reconnect adds nothing; a streak that went on after a
timeout settled it is counted again only for the steps beyond what was settled.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

from cloud.sources.frames import GiftFrame
from cloud.sources.keys import message_event_id, remainder_event_id, streak_event_id
from cloud.sources.settings import StreakSettings
from giftwheel.clock import Clock
from giftwheel.contracts import GiftEventIn

How = Literal["arrival", "end", "timeout", "shutdown"]


@dataclass(frozen=True, slots=True)
class Counted:
    """A gift that counts now, and why now."""

    event: GiftEventIn
    how: How


@dataclass(frozen=True, slots=True)
class Observation:
    counted: list[Counted]
    # The message repeated something already counted (TikTok's replay after a reconnect).
    replay: bool = False


@dataclass(slots=True)
class _Streak:
    event_id: str | None
    # Steps already counted by an earlier settlement of this streak (0 for a fresh streak).
    settled: int
    highest: GiftFrame
    last_seen_s: float


class _Memory:
    """What was counted, by id, for ``remember_s`` and at most ``remember_max`` entries."""

    def __init__(self, settings: StreakSettings) -> None:
        self._settings = settings
        self._counts: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def get(self, key: str) -> int | None:
        entry = self._counts.get(key)
        return None if entry is None else entry[0]

    def put(self, key: str, count: int, now_s: float) -> None:
        self._counts[key] = (count, now_s)
        self._counts.move_to_end(key)
        while len(self._counts) > self._settings.remember_max:
            self._counts.popitem(last=False)

    def forget_older_than(self, cutoff_s: float) -> None:
        while self._counts:
            key, (_, at) = next(iter(self._counts.items()))
            if at >= cutoff_s:
                return
            del self._counts[key]


class StreakTracker:
    def __init__(self, clock: Clock, settings: StreakSettings) -> None:
        self._clock = clock
        self._settings = settings
        self._open: dict[str, _Streak] = {}
        self._counted = _Memory(settings)

    @property
    def open_streaks(self) -> int:
        return len(self._open)

    def observe(self, frame: GiftFrame) -> Observation:
        now = self._clock.monotonic()
        self._counted.forget_older_than(now - self._settings.remember_s)
        if not frame.streakable:
            return self._arrival(frame, now)
        event_id = streak_event_id(frame)
        # Without a group id one open streak per user and gift is all that can be told apart.
        identity = event_id or f"{frame.user_id}:{frame.gift_id}:nogroup"
        settled = self._counted.get(event_id) if event_id else None
        if settled is not None and frame.repeat_count <= settled:
            return Observation([], replay=True)
        streak = self._open.get(identity)
        if streak is None:
            streak = _Streak(event_id, settled or 0, frame, now)
            self._open[identity] = streak
        else:
            streak.last_seen_s = now
            if frame.repeat_count >= streak.highest.repeat_count:
                streak.highest = frame
        if frame.repeat_end:
            del self._open[identity]
            return Observation(self._settle(streak, "end", now))
        return Observation([])

    def expire(self) -> list[Counted]:
        """Settle every streak whose last step is older than the timeout."""
        now = self._clock.monotonic()
        cutoff = now - self._settings.timeout_s
        stale = [key for key, streak in self._open.items() if streak.last_seen_s <= cutoff]
        counted: list[Counted] = []
        for key in stale:
            counted += self._settle(self._open.pop(key), "timeout", now)
        return counted

    def settle_all(self) -> list[Counted]:
        """Settle every open streak now with what was seen of it (the process is stopping)."""
        now = self._clock.monotonic()
        counted: list[Counted] = []
        for key in list(self._open):
            counted += self._settle(self._open.pop(key), "shutdown", now)
        return counted

    def _arrival(self, frame: GiftFrame, now: float) -> Observation:
        event_id = message_event_id(frame)
        if self._counted.get(event_id) is not None:
            return Observation([], replay=True)
        self._counted.put(event_id, frame.repeat_count, now)
        return Observation([Counted(self._event(frame, event_id, frame.repeat_count), "arrival")])

    def _settle(self, streak: _Streak, how: How, now: float) -> list[Counted]:
        total = streak.highest.repeat_count
        if streak.event_id is None:
            # No group id: the message that settles the streak names it.
            return [Counted(self._event(streak.highest, message_event_id(streak.highest), total), how)]
        self._counted.put(streak.event_id, total, now)
        event_id = streak.event_id
        if streak.settled:
            event_id = remainder_event_id(streak.event_id, streak.settled)
        return [Counted(self._event(streak.highest, event_id, total - streak.settled), how)]

    def _event(self, frame: GiftFrame, event_id: str, quantity: int) -> GiftEventIn:
        return GiftEventIn(
            event_id=event_id,
            event="gift",
            platform=frame.platform,
            user_id=frame.user_id,
            user_name=frame.user_name,
            channel=frame.channel,
            gift_name=frame.gift_name,
            diamond=frame.diamond,
            quantity=quantity,
            timestamp=frame.timestamp_ms or self._clock.wall_ms(),
        )
