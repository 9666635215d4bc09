"""JSON is read once and strictly: a key given twice, or an event given as a JSON string, is refused.

Both were accepted: the last of two values won ("diamond": 1, "diamond": 99999 stored 99999), and
a batch item or WebSocket item that was a string was decoded a second time.
"""

from __future__ import annotations

import orjson
import websockets
from redis.asyncio import Redis

from giftwheel.contracts import EVENTS_STREAM
from tests.ingest.conftest import Api, gift


def twice(key: str, first: object, second: object) -> bytes:
    """A gift whose body names ``key`` twice (no JSON library writes that, so it is spliced in)."""
    body = orjson.dumps({k: v for k, v in gift(eventId="dup:1").items() if k != key})
    return body[:-1] + b",%s,%s}" % tuple(orjson.dumps({key: v})[1:-1] for v in (first, second))


async def test_a_key_given_twice_is_refused(api: Api, redis: Redis) -> None:
    body = twice("diamond", 1, 99_999)
    assert body.count(b'"diamond"') == 2
    response = await api.client.post(
        "/v1/events", content=body, headers={**api.auth, "content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["detail"] == [{"field": "diamond", "reason": "given twice in one object"}]
    batch = b'{"events": [' + body + b"]}"
    response = await api.client.post(
        "/v1/events/batch", content=batch, headers={**api.auth, "content-type": "application/json"}
    )
    assert response.status_code == 422
    async with websockets.connect(api.ws_url, additional_headers=api.auth) as ws:
        await ws.send(body.decode())
        ack = orjson.loads(await ws.recv())
    assert (ack["error"], ack["detail"]) == (
        "rejected",
        [{"field": "diamond", "reason": "given twice in one object"}],
    )
    assert await redis.xlen(EVENTS_STREAM) == 0


async def test_an_event_given_as_a_json_string_is_refused(api: Api, redis: Redis) -> None:
    smuggled = orjson.dumps(gift(eventId="str:1")).decode()
    response = await api.client.post("/v1/events/batch", json={"events": [smuggled]}, headers=api.auth)
    assert response.status_code == 200
    (result,) = response.json()["results"]
    assert result["status"] == "rejected"
    assert result["detail"] == [{"field": "", "reason": "an event must be a JSON object"}]
    async with websockets.connect(api.ws_url, additional_headers=api.auth) as ws:
        await ws.send(orjson.dumps(smuggled).decode())
        await ws.send(orjson.dumps([smuggled]).decode())
        single, (item,) = orjson.loads(await ws.recv()), orjson.loads(await ws.recv())
    assert single["error"] == item["error"] == "rejected"
    assert await redis.xlen(EVENTS_STREAM) == 0
