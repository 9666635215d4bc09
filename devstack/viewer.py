"""A viewer of the overlay feed (plain WebSocket, /v1/realtime) that reconnects like the overlay.

It notes when it first heard of each command (a progress or done event naming it) and which
commands it knows finished, counting the done history in every join state, so tests and the
benchmark can check what a real viewer would have seen.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import websockets


class Viewer:
    def __init__(self, api_url: str, *, reconnect_s: float = 0.2) -> None:
        self.url = api_url.replace("http://", "ws://") + "/v1/realtime"
        self.first_heard_ms: dict[str, float] = {}
        self.done: set[str] = set()
        self.reconnects = 0
        self._reconnect_s = reconnect_s

    def take(self, frame: Any) -> None:
        now_ms = time.time() * 1000
        for message in frame if isinstance(frame, list) else [frame]:
            event, data = message.get("event"), message.get("data") or {}
            if event in ("motor.progress", "motor.done") and (command := data.get("commandId")):
                self.first_heard_ms.setdefault(command, now_ms)
                if event == "motor.done":
                    self.done.add(command)
            elif event == "state":  # on every (re)join: what finished meanwhile
                self.done.update(d["commandId"] for d in data.get("done", []) if d.get("commandId"))

    async def run(self) -> None:
        """Watch until cancelled."""
        while True:
            try:
                async with websockets.connect(self.url, max_size=None) as ws:
                    async for raw in ws:
                        self.take(orjson.loads(raw))
            except (OSError, websockets.WebSocketException):
                self.reconnects += 1
                await asyncio.sleep(self._reconnect_s)
