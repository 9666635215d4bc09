"""The TikFinity bridge end to end: a local WebSocket server plays TikFinity -> real API -> Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
from websockets.asyncio.server import ServerConnection, serve

from cloud.sources.settings import TikFinitySettings
from cloud.sources.tikfinity import TikFinitySource
from devstack.ports import free_port
from tests.sources.conftest import Rig
from tests.sources.replay import load_steps


class TikFinityPlayer:
    """Plays one recorded session per connection; a disconnect marker drops the socket."""

    def __init__(self, steps: list[dict[str, Any]], rig: Rig) -> None:
        self.sessions: list[list[dict[str, Any]]] = [[]]
        for step in steps:
            if step.get("disconnect"):
                self.sessions.append([])
            else:
                self.sessions[-1].append(step)
        self.frames = sum(1 for step in steps if "frame" in step)
        self.connections = 0
        self.sent = 0
        self.played = asyncio.Event()
        self._rig = rig

    async def handler(self, ws: ServerConnection) -> None:
        index = self.connections
        self.connections += 1
        for step in self.sessions[index] if index < len(self.sessions) else []:
            if "advance_s" in step:
                # Time passes only once the bridge has read everything sent before.
                await self._rig.until_messages(self.sent)
                self._rig.clock.advance(step["advance_s"])
                await asyncio.sleep(0.05)  # the sweeper's turn
            else:
                await ws.send(step["frame"])
                self.sent += 1
        if index < len(self.sessions) - 1:
            # TikFinity restarted or the link dropped: no closing handshake.
            ws.transport.abort()
            return
        self.played.set()
        await ws.wait_closed()


@asynccontextmanager
async def bridged(rig: Rig, name: str) -> AsyncIterator[TikFinityPlayer]:
    player = TikFinityPlayer(load_steps(name), rig)
    port = free_port()
    source = TikFinitySource(
        TikFinitySettings(backoff={"initial_s": 0.05, "max_s": 0.1}),
        url=f"ws://127.0.0.1:{port}",
        pipeline=rig.pipeline,
        metrics=rig.metrics,
        clock=rig.clock,
    )
    async with serve(player.handler, "127.0.0.1", port):
        tasks = [asyncio.create_task(source.run()), asyncio.create_task(rig.pipeline.sweep_forever(0.01))]
        try:
            async with asyncio.timeout(20):
                await player.played.wait()
                await rig.until_messages(player.frames)
            await rig.settle()
            yield player
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


def _summary(events: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return sorted((e["userName"], e["giftName"], e["quantity"]) for e in events)


async def test_a_streak_of_99_roses_is_one_event_of_99(rig: Rig) -> None:
    async with bridged(rig, "tikfinity_rose_streak_99_end"):
        [event] = await rig.stored()
        assert rig.metric("giftwheel_source_connected") == 1
    # The same id the direct TikTok source gives this streak: both can watch one room.
    assert event["eventId"] == "tiktok:6900000000000000001:5655:g1700000000001"
    assert (event["quantity"], event["channel"], event["userName"]) == (99, "wheel_host", "alice_01")
    assert rig.metric("giftwheel_source_connected") == 0


async def test_a_streak_without_its_end_is_settled_by_the_timeout(rig: Rig) -> None:
    async with bridged(rig, "tikfinity_rose_streak_99_no_end"):
        events = await rig.stored()
    assert _summary(events) == [("alice_01", "Rose", 99)]
    assert rig.metric("giftwheel_source_gifts_total", how="timeout") == 1


async def test_non_streakable_gifts_count_on_arrival(rig: Rig) -> None:
    async with bridged(rig, "tikfinity_nonstreakable"):
        events = await rig.stored()
    assert len(events) == 4
    assert len({e["eventId"] for e in events}) == 4


async def test_the_burst_replayed_after_a_reconnect_is_not_counted_again(rig: Rig) -> None:
    async with bridged(rig, "tikfinity_replay_after_reconnect") as player:
        events = await rig.stored()
    assert _summary(events) == [
        ("alice_01", "Rose", 5),
        ("bob.builds", "Galaxy", 1),
        ("bob.builds", "Lion", 1),
        ("cara", "GG", 7),
    ]
    assert player.connections == 2
    assert rig.metric("giftwheel_source_replays_total") == 5
    assert rig.metric("giftwheel_source_reconnects_total") >= 1
    assert rig.metric("giftwheel_source_gap_seconds_count") == 1


async def test_garbage_frames_are_counted_and_skipped(rig: Rig) -> None:
    async with bridged(rig, "tikfinity_garbage"):
        events = await rig.stored()
    assert _summary(events) == [("bob.builds", "Perfume", 1), ("cara", "Perfume", 1)]
    # "not JSON" and "[1, 2, 3]" fail as frames; a gift with text for data too; two gifts the
    # adapter cannot read; the like event is not a gift and is no failure.
    assert rig.metric("giftwheel_source_parse_failures_total", stage="frame") == 3
    assert rig.metric("giftwheel_source_parse_failures_total", stage="adapter") == 2


def test_the_recorded_frames_are_tikfinity_shaped() -> None:
    frames = [orjson.loads(s["frame"]) for s in load_steps("tikfinity_nonstreakable") if "frame" in s]
    assert {frame["event"] for frame in frames} == {"gift"}
    assert all({"giftType", "repeatEnd", "repeatCount", "msgId", "groupId"} <= set(f["data"]) for f in frames)
