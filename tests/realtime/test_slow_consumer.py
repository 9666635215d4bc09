"""A viewer that stops reading never holds up the others, loses only old progress, never a done."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from cloud.api.app import create_app
from cloud.api.cli import websocket_options
from cloud.realtime.events import ViewerEvent, device_rooms
from cloud.realtime.outbox import Message
from cloud.realtime.service import Realtime
from devstack.asgi_server import serve
from devstack.redis_server import RedisServer
from tests.feedback.conftest import Api, Viewer, make_settings

PAD = "x" * 1024  # enough bytes per event to fill the socket buffers of a viewer that stopped reading
FLOOD = 20_000
DONE_EVERY = 1_000


@pytest.fixture
async def small_queues(redis_server: RedisServer) -> AsyncIterator[Api]:
    settings = make_settings(redis_server.url, realtime={"max_pending_progress": 8, "max_pending_events": 50})
    app = create_app(settings)
    async with serve(app, **websocket_options(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        yield Api(url, client, app)


async def flood(realtime: Realtime, count: int, done_every: int) -> None:
    """Progress for motor_01 (seq 1..count), a done event every `done_every`; straight into the hub."""
    rooms = device_rooms("motor_01")
    for seq in range(1, count + 1):
        event = ViewerEvent.MOTOR_DONE if seq % done_every == 0 else ViewerEvent.MOTOR_PROGRESS
        realtime.hub.deliver(Message.of(event.value, {"device": "motor_01", "seq": seq, "pad": PAD}), rooms)
        if seq % 50 == 0:
            await asyncio.sleep(0)  # let the senders run, as they would between webhook calls


def seqs(frames: list[Any], event: str) -> list[int]:
    return [e["data"]["seq"] for e in frames if e["event"] == event]


async def test_a_stalled_viewer_does_not_block_others_and_keeps_every_done(small_queues: Api) -> None:
    realtime = small_queues.services().realtime
    fast = await Viewer.open(small_queues.viewer_url())
    await fast.wait_for("state")
    # max_queue=1: the client stops reading its socket as soon as one frame waits unread.
    stalled = await connect(small_queues.viewer_url(), max_queue=1)

    await flood(realtime, FLOOD, DONE_EVERY)
    dones = FLOOD // DONE_EVERY
    # The reading viewer is served at once, whatever the other does.
    await fast.wait_until(lambda: (seqs(fast.events, "motor.progress") or [0])[-1] == FLOOD - 1)
    assert seqs(fast.events, "motor.done") == list(range(DONE_EVERY, FLOOD + 1, DONE_EVERY))
    assert realtime.hub.evictions == 0
    # Frames went straight to the sockets until the stalled one stopped taking them; then they queued.
    assert realtime.hub.frames_direct > 0
    assert realtime.hub.frames_queued > 0

    # The stalled viewer now reads what waited for it: some progress is gone, no done event is.
    received: list[Any] = []
    async with asyncio.timeout(10):
        while len(seqs(received, "motor.done")) < dones:
            parsed = orjson.loads(await stalled.recv())
            received.extend(parsed if isinstance(parsed, list) else [parsed])
    assert received[0]["event"] == "state"
    assert seqs(received, "motor.done") == list(range(DONE_EVERY, FLOOD + 1, DONE_EVERY))
    progress_seen = seqs(received, "motor.progress")
    assert progress_seen == sorted(progress_seen)
    assert len(progress_seen) < FLOOD - dones, "the stalled viewer should have lost old progress"
    assert progress_seen[-1] == FLOOD - 1  # the newest progress is never the one dropped
    await stalled.close()
    await fast.close()


async def test_a_viewer_too_far_behind_on_done_events_is_disconnected_not_silently_skipped(
    small_queues: Api,
) -> None:
    realtime = small_queues.services().realtime
    fast = await Viewer.open(small_queues.viewer_url())
    await fast.wait_for("state")
    stalled = await connect(small_queues.viewer_url(), max_queue=1)
    await flood(realtime, 3_000, 1)  # only done events: 3,000 MB-sized... far past the bound of 50
    await fast.wait_for("motor.done", 3_000, timeout_s=10)
    assert realtime.hub.evictions == 1
    with pytest.raises(ConnectionClosed) as closed:  # noqa: PT012 (drain what was sent before the close)
        while True:
            await asyncio.wait_for(stalled.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
    assert "too slow" in closed.value.rcvd.reason
    await fast.close()


async def test_a_stalled_socketio_viewer_is_bounded_the_same_way(small_queues: Api) -> None:
    realtime = small_queues.services().realtime
    fast = await Viewer.open(small_queues.viewer_url())
    await fast.wait_for("state")
    url = small_queues.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    stalled = await connect(url, max_queue=1)
    await stalled.recv()  # engine.io open
    await stalled.send("40")

    await flood(realtime, FLOOD, DONE_EVERY)
    await fast.wait_until(lambda: (seqs(fast.events, "motor.progress") or [0])[-1] == FLOOD - 1)

    received: list[dict[str, Any]] = []
    async with asyncio.timeout(10):
        while len(seqs(received, "motor.done")) < FLOOD // DONE_EVERY:
            packet = await stalled.recv()
            assert isinstance(packet, str)
            if packet.startswith("42"):
                name, data = orjson.loads(packet[2:])
                received.append({"event": name, "data": data})
    assert received[0]["event"] == "state"
    assert seqs(received, "motor.done") == list(range(DONE_EVERY, FLOOD + 1, DONE_EVERY))
    progress_seen = seqs(received, "motor.progress")
    assert len(progress_seen) < FLOOD - FLOOD // DONE_EVERY
    assert progress_seen[-1] == FLOOD - 1
    await stalled.close()
    await fast.close()
