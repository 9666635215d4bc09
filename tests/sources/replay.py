"""Loading the recorded gift sequences of fixtures/."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures"
STREAMER = "wheel_host"


def load_steps(name: str) -> list[dict[str, Any]]:
    document = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    steps: list[dict[str, Any]] = document["steps"]
    return steps


def gift_payloads(name: str) -> list[dict[str, Any]]:
    """The TikTokLive GiftEvent dicts of a sequence, in order (markers and garbage left out)."""
    return [step["gift"] for step in load_steps(name) if "gift" in step]
