"""The batch endpoint and the WebSocket ingest: per-item outcomes, acks only after storing."""

from __future__ import annotations

import orjson
import pytest
import websockets
from redis.asyncio import Redis
from websockets.exceptions import InvalidStatus

from giftwheel.contracts import EVENTS_STREAM
from tests.ingest.conftest import API_KEY, Api, gift


async def test_batch_with_mixed_items(api: Api, redis: Redis) -> None:
    await api.post(gift(eventId="b:seen"))
    events = [gift(eventId="b:1"), gift(diamond=-5), gift(eventId="b:seen"), gift(eventId="b:2")]
    response = await api.client.post("/v1/events/batch", json={"events": events}, headers=api.auth)
    assert response.status_code == 200
    body = response.json()
    assert (body["accepted"], body["duplicates"], body["rejected"]) == (2, 1, 1)
    assert [r["status"] for r in body["results"]] == ["accepted", "rejected", "duplicate", "accepted"]
    assert body["results"][1]["detail"][0]["field"] == "diamond"
    assert await redis.xlen(EVENTS_STREAM) == 3


async def test_batch_with_the_same_event_twice_stores_it_once(api: Api, redis: Redis) -> None:
    events = [gift(eventId="b:twin"), gift(eventId="b:twin")]
    response = await api.client.post("/v1/events/batch", json={"events": events}, headers=api.auth)
    assert [r["status"] for r in response.json()["results"]] == ["accepted", "duplicate"]
    assert await redis.xlen(EVENTS_STREAM) == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 422),
        (b'[{"event": "gift"}]', 422),
        (b'{"events": {}}', 422),
        (b'{"events": [], "extra": 1}', 422),
        (orjson.dumps({"events": [gift()] * 1001}), 413),
    ],
    ids=["malformed", "bare array", "events not a list", "extra key", "over max_batch_events"],
)
async def test_bad_batches_are_refused_whole(api: Api, redis: Redis, body: bytes, status: int) -> None:
    response = await api.client.post(
        "/v1/events/batch", content=body, headers={**api.auth, "content-type": "application/json"}
    )
    assert response.status_code == status
    assert await redis.xlen(EVENTS_STREAM) == 0


async def test_websocket_acks_every_event_by_seq(api: Api, redis: Redis) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with websockets.connect(api.ws_url, additional_headers=headers) as ws:
        await ws.send(orjson.dumps([gift(eventId="w:1"), gift(eventId="w:2")]).decode())
        await ws.send(orjson.dumps(gift(quantity=0)).decode())
        await ws.send(orjson.dumps(gift(eventId="w:1")).decode())
        await ws.send("{broken")
        acks = {}
        for _ in range(4):
            answer = orjson.loads(await ws.recv())
            for ack in answer if isinstance(answer, list) else [answer]:
                acks[ack["seq"]] = ack
    assert acks[0] == {"seq": 0, "eventId": "w:1", "duplicate": False}
    assert acks[1] == {"seq": 1, "eventId": "w:2", "duplicate": False}
    assert acks[2]["error"] == "rejected"
    assert acks[2]["detail"][0]["field"] == "quantity"
    assert acks[3] == {"seq": 3, "eventId": "w:1", "duplicate": True}
    assert acks[4]["error"] == "rejected"
    assert "malformed JSON" in acks[4]["detail"]
    assert await redis.xlen(EVENTS_STREAM) == 2


async def test_websocket_array_is_answered_by_one_array(api: Api, redis: Redis) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    events = [gift(eventId="a:1"), gift(diamond=0), gift(eventId="a:1"), gift(eventId="a:2")]
    async with websockets.connect(api.ws_url, additional_headers=headers) as ws:
        await ws.send(orjson.dumps(events).decode())
        answer = orjson.loads(await ws.recv())
        await ws.send(orjson.dumps([gift()] * 1001).decode())
        too_many = orjson.loads(await ws.recv())
    assert [ack["seq"] for ack in answer] == [0, 1, 2, 3]
    assert [ack.get("duplicate", ack.get("error")) for ack in answer] == [
        False,
        "rejected",
        True,
        False,
    ]
    assert len(too_many) == 1001
    assert {ack["error"] for ack in too_many} == {"rejected"}
    assert too_many[0]["seq"] == 4
    assert await redis.xlen(EVENTS_STREAM) == 2


async def test_websocket_without_key_is_refused(api: Api) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(api.ws_url):
            pass
    assert refused.value.response.status_code == 403


async def test_websocket_oversized_frame_closes_with_1009(api: Api, redis: Redis) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with websockets.connect(api.ws_url, additional_headers=headers, max_size=None) as ws:
        await ws.send("x" * 2_100_000)
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    assert await redis.xlen(EVENTS_STREAM) == 0
