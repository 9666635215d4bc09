"""WebSocket compression is the server's setting (realtime.permessage_deflate), whatever clients offer;
compressed connections never take direct frames."""

from __future__ import annotations

import httpx
import orjson
import pytest
from websockets.asyncio.client import connect

from cloud.api.app import create_app
from cloud.api.cli import websocket_options
from devstack.asgi_server import serve
from devstack.redis_server import RedisServer
from tests.feedback.conftest import Api, frames_by_path, make_settings, progress


@pytest.mark.parametrize("deflate", [False, True])
async def test_permessage_deflate_is_granted_only_when_configured(
    redis_server: RedisServer, known_motors: None, deflate: bool
) -> None:
    settings = make_settings(redis_server.url, realtime={"permessage_deflate": deflate})
    app = create_app(settings)
    async with (
        serve(app, **websocket_options(settings)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        api = Api(url, client, app)
        # Offered as browsers offer it.
        async with connect(api.viewer_url(), compression="deflate") as ws:
            granted = ws.response is not None and "permessage-deflate" in ws.response.headers.get(
                "Sec-WebSocket-Extensions", ""
            )
            assert granted is deflate
            assert orjson.loads(await ws.recv())["event"] == "state"
            assert (await api.post_feedback(progress(2))).status_code == 200
            event = orjson.loads(await ws.recv())
            assert event["event"] == "motor.progress"
            assert event["data"]["device"] == "motor_01"
        # A compressed connection's frames differ per connection: none may take a shared direct frame.
        assert await frames_by_path(api) == (
            {"direct": 0, "queued": 1} if deflate else {"direct": 1, "queued": 0}
        )
