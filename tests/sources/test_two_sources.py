"""The same room watched by the TikTok source and the TikFinity bridge: every gift stored once."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry
from pytest_mock import MockerFixture
from websockets.asyncio.server import serve

from cloud.sources.ingest_client import IngestClient
from cloud.sources.metrics import SourceMetrics
from cloud.sources.pipeline import GiftPipeline
from cloud.sources.settings import TikFinitySettings
from cloud.sources.streaks import StreakTracker
from cloud.sources.tikfinity import TikFinitySource
from cloud.sources.tiktok import TikTokSource, load_library
from devstack.ports import free_port
from tests.sources.conftest import Rig, until_sample
from tests.sources.replay import STREAMER, load_steps
from tests.sources.test_tikfinity_source import TikFinityPlayer
from tests.sources.tiktok_room import RecordedRoom


async def test_two_sources_on_one_room_store_each_gift_once(rig: Rig, mocker: MockerFixture) -> None:
    # The TikTok source uses the rig's pipeline; the bridge gets its own, as its own process would.
    bridge_metrics = SourceMetrics("tikfinity", STREAMER, CollectorRegistry())
    bridge_ingest = IngestClient(rig.settings, bridge_metrics)
    bridge_pipeline = GiftPipeline(
        tracker=StreakTracker(rig.clock, rig.settings.streaks),
        ingest=bridge_ingest,
        bounds=rig.settings.bounds,
        clock=rig.clock,
        metrics=bridge_metrics,
        channel=STREAMER,
    )
    room = RecordedRoom(load_steps("tiktoklive_replay_after_reconnect"), rig.clock, mocker)
    library = load_library()
    tiktok = TikTokSource(
        rig.settings.tiktok,
        unique_id=STREAMER,
        pipeline=rig.pipeline,
        metrics=rig.metrics,
        clock=rig.clock,
        library=library.__class__(**{**library.__dict__, "new_client": room.new_client}),
        sleep=room.sleep,
    )
    player = TikFinityPlayer(load_steps("tikfinity_replay_after_reconnect"), rig)
    port = free_port()
    bridge = TikFinitySource(
        TikFinitySettings(backoff={"initial_s": 0.05, "max_s": 0.1}),
        url=f"ws://127.0.0.1:{port}",
        pipeline=bridge_pipeline,
        metrics=bridge_metrics,
        clock=rig.clock,
    )
    async with serve(player.handler, "127.0.0.1", port):
        tasks = [
            asyncio.create_task(coroutine)
            for coroutine in (
                bridge_ingest.run(),
                tiktok.run(),
                bridge.run(),
                rig.pipeline.sweep_forever(0.01),
            )
        ]
        try:
            async with asyncio.timeout(20):
                await room.done.wait()
                await player.played.wait()
                await until_sample(bridge_metrics, "giftwheel_source_messages_total", player.frames)
            await rig.settle()
            bridge_pipeline.sweep()
            assert await bridge_ingest.drain(10)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    events = await rig.stored()
    assert sorted((e["userName"], e["giftName"], e["quantity"]) for e in events) == [
        ("alice_01", "Rose", 5),
        ("bob.builds", "Galaxy", 1),
        ("bob.builds", "Lion", 1),
        ("cara", "GG", 7),
    ]
    acked = sum(
        (m.registry.get_sample_value("giftwheel_source_ingest_acked_total", labels) or 0)
        for m, labels in (
            (rig.metrics, {"source": "test", "channel": STREAMER, "result": "duplicate"}),
            (bridge_metrics, {"source": "tikfinity", "channel": STREAMER, "result": "duplicate"}),
        )
    )
    # Each gift reached the API twice, once per source; the second copy was a duplicate.
    assert acked == 4
