"""Progress pacing: updates within an interval of the last publish go out together, newest per
device, in one frame per viewer; a done is never held back and outdates its device's waiting update."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect

from cloud.api.app import create_app
from cloud.api.cli import websocket_options
from devstack.asgi_server import serve
from devstack.redis_server import RedisServer
from tests.feedback.conftest import KNOWN_COMMANDS, Api, make_settings, progress

INTERVAL_S = 1.0  # long enough that the posts below all land inside one interval on a busy box


@pytest.fixture
async def paced(redis_server: RedisServer, known_motors: None) -> AsyncIterator[Api]:
    settings = make_settings(redis_server.url, realtime={"progress_publish_interval_s": INTERVAL_S})
    app = create_app(settings)
    async with (
        serve(app, **websocket_options(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        yield Api(url, client, app)


async def frame(ws: ClientConnection) -> list[dict[str, Any]]:
    """One frame's events (a frame holds one event or an array of them)."""
    parsed = orjson.loads(await ws.recv(decode=False))
    return parsed if isinstance(parsed, list) else [parsed]


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(e["event"], e["data"]["device"], e["data"]["commandRoundsDone"]) for e in events]


async def test_updates_inside_an_interval_go_out_together_newest_per_device(paced: Api) -> None:
    everything = await connect(paced.viewer_url())
    only_02 = await connect(paced.viewer_url("?device=motor_02"))
    for ws in (everything, only_02):
        assert (await frame(ws))[0]["event"] == "state"

    cid_1, cid_2 = KNOWN_COMMANDS["motor_01"], KNOWN_COMMANDS["motor_02"]
    posts = [("motor_01", 1, cid_1), ("motor_01", 2, cid_1), ("motor_01", 3, cid_1),
             ("motor_02", 1, cid_2), ("motor_02", 2, cid_2)]  # fmt: skip
    for device, done, cid in posts:
        response = await paced.post_feedback(progress(done, 10, command_id=cid), device=device)
        assert response.json()["published"] == "motor.progress"

    # The first went out at once; the rest waited for the interval's end, merged per device.
    assert summary(await frame(everything)) == [("motor.progress", "motor_01", 1)]
    assert summary(await frame(everything)) == [
        ("motor.progress", "motor_01", 3),
        ("motor.progress", "motor_02", 2),
    ]
    assert summary(await frame(only_02)) == [("motor.progress", "motor_02", 2)]

    # A done is not held back, and the progress it outdates is never sent after it.
    await paced.post_feedback(progress(4, 10, command_id=cid_1))
    await paced.post_feedback(progress(10, 10, command_id=cid_1))
    assert summary(await frame(everything)) == [("motor.done", "motor_01", 10)]
    await paced.post_feedback(progress(3, 10, command_id=cid_2), device="motor_02")
    assert summary(await frame(everything)) == [("motor.progress", "motor_02", 3)]  # nothing else between
    await everything.close()
    await only_02.close()
