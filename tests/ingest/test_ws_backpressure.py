"""A keyed WebSocket client that stops reading its acks is slowed down, not buffered without bound."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import orjson
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from devstack.api_process import ApiProcess
from devstack.redis_server import RedisServer
from tests.ingest.conftest import API_KEY, METRICS_TOKEN, read_metrics

pytestmark = pytest.mark.slow

# One item over max_batch_events: 2 KB in, ~70 KB of acks out (every item answered "rejected").
_ITEMS = 1_001
_FRAME = orjson.dumps([1] * _ITEMS).decode()
# 2 MB of frames, well inside the kernel's socket buffers: the client never blocks sending them.
# Buffered, their acks would be ~70 MB.
_FRAMES = 1_000


@pytest.fixture
def api_process(redis_server: RedisServer) -> Iterator[ApiProcess]:
    env = {
        "GIFTWHEEL_REDIS_URL": redis_server.url,
        "GIFTWHEEL_API_KEYS": API_KEY,
        "GIFTWHEEL_METRICS__TOKEN": METRICS_TOKEN,
    }
    with ApiProcess(env) as api:
        yield api


async def _frames_answered(client: httpx.AsyncClient) -> int:
    """Frames the API has read and answered so far (its count of items rejected on the socket)."""
    for family in text_string_to_metric_families(await read_metrics(client)):
        for sample in family.samples:
            if sample.name == "giftwheel_ingest_rejected_total" and sample.labels == {
                "endpoint": "websocket",
                "reason": "invalid",
            }:
                return int(sample.value) // _ITEMS
    return 0


async def _settled(client: httpx.AsyncClient) -> int:
    """The answered count once it has stopped moving (every frame answered, or the API waiting)."""
    last = -1
    while (now := await _frames_answered(client)) != last and now < _FRAMES:
        last = now
        await asyncio.sleep(1.0)
    return now


async def test_a_client_not_reading_acks_is_not_read_either(api_process: ApiProcess) -> None:
    ws_url = api_process.url.replace("http://", "ws://") + "/v1/ingest"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with (
        httpx.AsyncClient(base_url=api_process.url, timeout=10) as client,
        # max_queue=1: the client's own library stops reading the socket after one unread ack.
        websockets.connect(ws_url, additional_headers=headers, max_queue=1) as ws,
    ):
        for _ in range(_FRAMES):
            await ws.send(_FRAME)
        answered = await _settled(client)
        assert answered < _FRAMES, "the API read every frame though no ack was read"
        # The client catches up: every frame is answered, in order, nothing lost.
        seqs = []
        for _ in range(_FRAMES):
            acks = orjson.loads(await asyncio.wait_for(ws.recv(), 30))
            assert {ack["error"] for ack in acks} == {"rejected"}
            seqs += [ack["seq"] for ack in acks]
        assert seqs == list(range(_FRAMES * _ITEMS))
