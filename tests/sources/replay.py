"""Loading the recorded gift sequences of fixtures/ and shifting them to the present."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson

FIXTURES = Path(__file__).parent / "fixtures"
STREAMER = "wheel_host"


def load_steps(name: str) -> list[dict[str, Any]]:
    document = json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))
    steps: list[dict[str, Any]] = document["steps"]
    return steps


def gift_payloads(name: str) -> list[dict[str, Any]]:
    """The TikTokLive GiftEvent dicts of a sequence, in order (markers and garbage left out)."""
    return [step["gift"] for step in load_steps(name) if "gift" in step]


def shift_times(steps: list[dict[str, Any]], shift_ms: int) -> list[dict[str, Any]]:
    """The same sequence recorded ``shift_ms`` later (the ingest API refuses day-old gifts)."""
    shifted: list[dict[str, Any]] = []
    for step in steps:
        if "gift" in step:
            gift = json.loads(json.dumps(step["gift"]))
            gift["common"]["createTime"] = str(int(gift["common"]["createTime"]) + shift_ms)
            step = {"gift": gift}
        elif "frame" in step:
            try:
                document = orjson.loads(step["frame"])
            except orjson.JSONDecodeError:
                document = None
            data = document.get("data") if isinstance(document, dict) else None
            if isinstance(data, dict) and "createTime" in data:
                data["createTime"] = str(int(data["createTime"]) + shift_ms)
                data["timestamp"] = int(data["timestamp"]) + shift_ms
                step = {"frame": orjson.dumps(document).decode()}
        shifted.append(step)
    return shifted
