"""A realistic burst of gifts for the demo and the end-to-end tests: mixed values, streak totals,
replays of already-sent events, and a few invalid ones, reproducible from a seed."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

# (name, diamonds, weight): roughly how often each shows up in a real room.
CATALOG: tuple[tuple[str, int, int], ...] = (
    ("Rose", 1, 50),
    ("TikTok", 1, 10),
    ("Finger Heart", 5, 15),
    ("Rosa", 10, 8),
    ("Perfume", 20, 6),
    ("Doughnut", 30, 4),
    ("Confetti", 100, 1),
)

INVALID: tuple[dict[str, Any], ...] = (
    {"diamond": 0},
    {"quantity": -3},
    {"giftName": ""},
    {"event": "like"},
    {"diamond": "ten"},
)


class Kind(StrEnum):
    NEW = "new"
    REPLAY = "replay"  # the same eventId again: a source retry or TikTok's reconnect burst
    INVALID = "invalid"


@dataclass(frozen=True)
class PlannedGift:
    kind: Kind
    payload: dict[str, Any]

    @property
    def event_id(self) -> str:
        return str(self.payload.get("eventId", ""))


def plan_gifts(
    count: int, *, seed: int = 7, replay_ratio: float = 0.05, invalid_ratio: float = 0.02
) -> list[PlannedGift]:
    rng = random.Random(seed)
    names, diamonds, weights = zip(*CATALOG, strict=True)
    run = f"{int(time.time())}-{seed}"
    now_ms = int(time.time() * 1000)
    plan: list[PlannedGift] = []
    for n in range(count):
        roll = rng.random()
        if plan and roll < replay_ratio:
            original = rng.choice([g for g in plan if g.kind is Kind.NEW])
            plan.append(PlannedGift(Kind.REPLAY, original.payload))
            continue
        index = rng.choices(range(len(CATALOG)), weights=weights)[0]
        streak = rng.choice((1, 1, 1, 3, 5, 10, 20)) if diamonds[index] == 1 else rng.choice((1, 1, 2))
        payload: dict[str, Any] = {
            "eventId": f"demo:{run}:{n}",
            "event": "gift",
            "platform": "tiktok",
            "channel": "demo",
            "userId": f"user_{rng.randrange(400)}",
            "userName": f"viewer{rng.randrange(400)}",
            "giftName": names[index],
            "diamond": diamonds[index],
            "quantity": streak,
            "timestamp": now_ms,
        }
        if roll > 1 - invalid_ratio:
            payload.update(rng.choice(INVALID))
            plan.append(PlannedGift(Kind.INVALID, payload))
        else:
            plan.append(PlannedGift(Kind.NEW, payload))
    return plan
