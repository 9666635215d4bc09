"""Two real `giftwheel api` processes on one Redis: a viewer on A sees what reaches B."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from devstack.api_process import ApiProcess
from devstack.redis_server import RedisServer
from tests.feedback.conftest import FEEDBACK_SECRET, Api, Viewer, progress
from tests.ingest.conftest import API_KEY
from tests.realtime.test_viewers import SocketIoClient

pytestmark = pytest.mark.slow


@pytest.fixture
def two_apis(redis_server: RedisServer, known_motors: None) -> Iterator[tuple[ApiProcess, ApiProcess]]:
    env = {
        "GIFTWHEEL_REDIS_URL": redis_server.url,
        "GIFTWHEEL_API_KEYS": API_KEY,
        "GIFTWHEEL_FEEDBACK__SECRET": FEEDBACK_SECRET,
    }
    with ApiProcess(env, name="api-a") as a, ApiProcess(env, name="api-b") as b:
        yield a, b


async def test_viewers_on_one_instance_see_feedback_and_gifts_posted_to_another(
    two_apis: tuple[ApiProcess, ApiProcess],
) -> None:
    a, b = two_apis
    async with httpx.AsyncClient(base_url=b.url, timeout=10) as client:
        on_b = Api(b.url, client)
        viewer = await Viewer.open(Api(a.url, client).viewer_url())
        await viewer.wait_for("state")
        socketio_viewer = await SocketIoClient.open(a.url)
        assert (await socketio_viewer.next_event())[0] == "state"

        assert (await on_b.post_feedback(progress(1, 3))).status_code == 200
        (update,) = await viewer.wait_for("motor.progress")
        assert (update["device"], update["commandRoundsDone"]) == ("motor_01", 1)
        name, data = await socketio_viewer.next_event()
        assert (name, data["commandRoundsDone"]) == ("motor.progress", 1)

        assert (await on_b.post_gift(eventId="tiktok:via-b")).status_code == 202
        (gift,) = await viewer.wait_for("gift.accepted")
        assert gift["eventId"] == "tiktok:via-b"

        assert (await on_b.post_feedback(progress(3, 3))).json()["published"] == "motor.done"
        (done,) = await viewer.wait_for("motor.done")
        assert done["commandDone"] is True

        # A late joiner on A gets the state B recorded.
        await asyncio.sleep(0.2)
        late = await Viewer.open(Api(a.url, client).viewer_url())
        (state,) = await late.wait_for("state")
        assert state["devices"][0]["commandRoundsDone"] == 3
        assert state["gifts"][0]["eventId"] == "tiktok:via-b"
        for closing in (viewer, late):
            await closing.close()
        await socketio_viewer.close()
