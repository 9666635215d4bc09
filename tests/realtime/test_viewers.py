"""Viewers: gift.accepted from ingest, late joiners, rooms, Socket.IO, origin check, connection limit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from cloud.api.app import create_app
from cloud.ledger.store import Ledger
from devstack.asgi_server import serve
from devstack.redis_server import RedisServer
from tests.feedback.conftest import Api, Viewer, gift, make_settings, new_command, progress


async def test_an_accepted_gift_reaches_viewers_once(api: Api, viewer: Viewer) -> None:
    event = {"eventId": "tiktok:gift-1", "giftName": "Lion", "diamond": 29, "quantity": 2, "channel": "ada"}
    assert (await api.post_gift(**event)).status_code == 202
    assert (await api.post_gift(**event)).status_code == 200  # a replay: stored once, announced once
    (announced,) = await viewer.wait_for("gift.accepted")
    assert announced["eventId"] == "tiktok:gift-1"
    assert (announced["user"], announced["giftName"], announced["quantity"]) == ("Ada", "Lion", 2)
    assert announced["baseRounds"] == 58
    assert announced["channel"] == "ada"
    await asyncio.sleep(0.3)
    assert len(viewer.named("gift.accepted")) == 1


async def test_gifts_from_the_batch_endpoint_are_announced(api: Api, viewer: Viewer) -> None:
    headers = {"Authorization": "Bearer test-key-0123456789abcdef"}
    events = [gift(eventId=f"tiktok:b{i}", timestamp=int(time.time() * 1000) + i) for i in range(3)]
    response = await api.client.post("/v1/events/batch", json={"events": events}, headers=headers)
    assert response.json()["accepted"] == 3
    announced = await viewer.wait_for("gift.accepted", 3)
    assert sorted(a["eventId"] for a in announced) == ["tiktok:b0", "tiktok:b1", "tiktok:b2"]


async def test_a_flood_of_gifts_is_announced_in_a_few_frames_and_none_is_lost(api: Api) -> None:
    """Waiting announcements go out together: one frame per channel per flush on a plain WebSocket,
    each gift still its own event (and its own packet on Socket.IO)."""
    plain = await connect(api.viewer_url())
    assert orjson.loads(await plain.recv())["event"] == "state"
    client = await SocketIoClient.open(api.url)
    assert (await client.next_event())[0] == "state"
    events = [gift(eventId=f"tiktok:flood-{i}", **({"channel": "ada"} if i % 4 else {})) for i in range(40)]
    headers = {"Authorization": "Bearer test-key-0123456789abcdef"}
    response = await api.client.post("/v1/events/batch", json={"events": events}, headers=headers)
    assert response.json()["accepted"] == 40

    frames, announced = 0, list[str]()
    async with asyncio.timeout(10):
        while len(announced) < 40:
            parsed = orjson.loads(await plain.recv())
            frames += 1
            announced += [e["data"]["eventId"] for e in (parsed if isinstance(parsed, list) else [parsed])]
        # 50 a second in flushes 0.2 s apart: 4 flushes of 10, each one frame per channel (two here).
        assert frames <= 8
        socketio_announced = [(await client.next_event())[1]["eventId"] for _ in range(40)]
    expected = {e["eventId"] for e in events}
    assert (set(announced), len(announced)) == (expected, 40)
    assert (set(socketio_announced), len(socketio_announced)) == (expected, 40)
    await plain.close()
    await client.close()


async def test_a_late_joiner_gets_the_current_state_first(api: Api) -> None:
    await api.post_gift(eventId="tiktok:early", channel="ada")
    await api.post_feedback(progress(2, 5), device="motor_01")
    await api.post_feedback(progress(1, 3), device="motor_02")
    await asyncio.sleep(0.3)  # announcements are published behind the ingest call

    late = await Viewer.open(api.viewer_url())
    (state,) = await late.wait_for("state")
    assert late.events[0]["event"] == "state"
    assert [d["device"] for d in state["devices"]] == ["motor_01", "motor_02"]
    assert state["devices"][0]["commandRoundsDone"] == 2
    assert [g["eventId"] for g in state["gifts"]] == ["tiktok:early"]
    await late.close()


async def test_a_viewer_that_rejoins_learns_which_commands_finished_while_it_was_away(
    api: Api, ledger: Ledger
) -> None:
    a = await new_command(ledger, "tiktok:a", 3, "motor_01")
    b = await new_command(ledger, "tiktok:b", 2, "motor_02")
    c = await new_command(ledger, "tiktok:c", 4, "motor_02")
    await api.post_feedback(progress(3, 3, command_id=a.command_id), device="motor_01")
    await api.post_feedback(progress(2, 2, command_id=b.command_id), device="motor_02")
    await api.post_feedback(progress(1, 4, command_id=c.command_id), device="motor_02")

    rejoined = await Viewer.open(api.viewer_url())
    (state,) = await rejoined.wait_for("state")
    assert {d["device"]: d["commandId"] for d in state["done"]} == {
        "motor_01": a.command_id,
        "motor_02": b.command_id,
    }
    await rejoined.close()


async def test_rooms_per_device_and_channel(api: Api) -> None:
    only_two = await Viewer.open(api.viewer_url("?device=motor_02"))
    only_bob = await Viewer.open(api.viewer_url("?channel=bob"))
    await only_two.wait_for("state")
    await only_bob.wait_for("state")
    await api.post_feedback(progress(1), device="motor_01")
    await api.post_feedback(progress(1), device="motor_02")
    await api.post_gift(eventId="tiktok:to-ada", channel="ada")
    await api.post_gift(eventId="tiktok:to-bob", channel="bob")
    (update,) = await only_two.wait_for("motor.progress")
    (gift,) = await only_bob.wait_for("gift.accepted")
    await asyncio.sleep(0.3)
    assert update["device"] == "motor_02"
    assert gift["eventId"] == "tiktok:to-bob"
    assert len(only_two.named("motor.progress")) == 1
    assert only_two.named("gift.accepted") == []
    assert len(only_bob.named("gift.accepted")) == 1
    await only_two.close()
    await only_bob.close()


async def test_bad_room_names_are_refused(api: Api) -> None:
    bad = await connect(api.viewer_url("?device=" + "x" * 65))
    with pytest.raises(ConnectionClosed) as closed:
        await bad.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008


class SocketIoClient:
    """A minimal Engine.IO 4 / Socket.IO 5 client over WebSocket (the protocol browsers speak)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    @classmethod
    async def open(
        cls, base_url: str, query: str = "", auth: dict[str, Any] | None = None, origin: str | None = None
    ) -> SocketIoClient:
        url = base_url.replace("http://", "ws://") + f"/socket.io/?EIO=4&transport=websocket{query}"
        client = cls(await connect(url, origin=origin))  # type: ignore[arg-type]
        opened = await client.ws.recv()
        assert isinstance(opened, str)
        assert opened.startswith("0{")
        await client.ws.send("40" + (orjson.dumps(auth).decode() if auth else ""))
        return client

    async def next_event(self, timeout_s: float = 5.0) -> tuple[str, Any]:
        async with asyncio.timeout(timeout_s):
            while True:
                packet = await self.ws.recv()
                assert isinstance(packet, str)
                if packet == "2":  # engine.io ping
                    await self.ws.send("3")
                elif packet.startswith("42"):
                    name, data = orjson.loads(packet[2:])
                    return name, data
                elif packet.startswith("41") or packet.startswith("44"):
                    raise ConnectionError(f"socket.io refused or closed: {packet}")

    async def close(self) -> None:
        await self.ws.close()


async def test_socketio_viewers_get_the_same_events(api: Api) -> None:
    client = await SocketIoClient.open(api.url, auth={"devices": ["motor_01"]})
    name, state = await client.next_event()
    assert (name, state) == ("state", {"devices": [], "gifts": [], "done": []})
    await api.post_feedback(progress(1, 2))
    await api.post_feedback(progress(2, 2))
    assert (await client.next_event())[0] == "motor.progress"
    name, done = await client.next_event()
    assert name == "motor.done"
    assert done["commandRoundsDone"] == 2
    await client.close()


async def test_both_transports_carry_the_same_payload_whatever_its_text(api: Api, viewer: Viewer) -> None:
    # Each transport's frame is encoded once per event and shared by all its viewers.
    client = await SocketIoClient.open(api.url)
    assert (await client.next_event())[0] == "state"
    fields = {"eventId": "tiktok:gift-2", "userName": 'Zoë 🎁 "the" \\ best', "channel": "café"}
    assert (await api.post_gift(**fields)).status_code == 202
    (plain,) = await viewer.wait_for("gift.accepted")
    assert (plain["user"], plain["channel"]) == (fields["userName"], "café")
    assert await client.next_event() == ("gift.accepted", plain)
    await client.close()


@pytest.fixture
async def guarded(redis_server: RedisServer) -> AsyncIterator[Api]:
    settings = make_settings(
        redis_server.url,
        realtime={"allowed_origins": ["https://overlay.example"], "max_connections": 2},
    )
    async with serve(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as client:
        yield Api(url, client)


async def test_origin_check(guarded: Api) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(guarded.viewer_url(), origin="https://elsewhere.example")  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    allowed = await Viewer.open(guarded.viewer_url(), origin="https://overlay.example")
    await allowed.wait_for("state")
    await allowed.close()
    with pytest.raises(InvalidStatus):
        await SocketIoClient.open(guarded.url, origin="https://elsewhere.example")
    client = await SocketIoClient.open(guarded.url)  # no Origin header (not a browser): allowed
    assert (await client.next_event())[0] == "state"
    await client.close()


async def test_connection_limit(guarded: Api) -> None:
    first = await Viewer.open(guarded.viewer_url())
    second = await Viewer.open(guarded.viewer_url())
    await first.wait_for("state")
    await second.wait_for("state")
    third = await connect(guarded.viewer_url())
    with pytest.raises(ConnectionClosed) as closed:
        await third.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
    await first.close()
    await asyncio.sleep(0.2)
    fourth = await Viewer.open(guarded.viewer_url())  # a place became free
    await fourth.wait_for("state")
    await second.close()
    await fourth.close()
