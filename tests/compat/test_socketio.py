"""What cloud/compat/socketio.py assumes of python-socketio and python-engineio still holds: a real
engine.io session (long polling through the ASGI app, in process) reaches our hooks and is where we
read, write and end it."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import socketio
from socketio.async_pubsub_manager import AsyncPubSubManager

from cloud.compat import socketio as compat
from devstack.redis_server import RedisServer
from tests.compat.versions import assert_checked_range

COMPAT = "cloud/compat/socketio.py"
POLLING = "/socket.io/?EIO=4&transport=polling"


@pytest.mark.parametrize("distribution", sorted(compat.CHECKED))
def test_installed_and_allowed_versions_are_the_checked_ones(distribution: str) -> None:
    assert_checked_range(distribution, compat.CHECKED[distribution], COMPAT)


class _Recording(compat.AsyncServer):
    def __init__(self) -> None:
        super().__init__(async_mode="asgi", logger=False, engineio_logger=False)
        self.messages: list[tuple[str, Any]] = []
        self.ended: list[tuple[str, Any]] = []

    async def engineio_message(self, eio_sid: str, data: Any) -> None:
        self.messages.append((eio_sid, data))
        await super().engineio_message(eio_sid, data)

    async def engineio_disconnect(self, eio_sid: str, reason: Any) -> None:
        self.ended.append((eio_sid, reason))
        await super().engineio_disconnect(eio_sid, reason)


@pytest.fixture
async def server() -> AsyncIterator[tuple[_Recording, httpx.AsyncClient]]:
    sio = _Recording()
    transport = httpx.ASGITransport(app=socketio.ASGIApp(sio))
    async with httpx.AsyncClient(transport=transport, base_url="http://t", timeout=5) as client:
        yield sio, client
    await sio.shutdown()


async def _session(client: httpx.AsyncClient) -> str:
    opened = await client.get(POLLING)
    sid: str = orjson.loads(opened.text[1:])["sid"]  # "0{...}": the engine.io OPEN packet
    return sid


def test_the_overridden_handlers_are_what_engineio_calls() -> None:
    sio = compat.AsyncServer(async_mode="asgi")
    for event, name in (("message", "_handle_eio_message"), ("disconnect", "_handle_eio_disconnect")):
        handler = sio.eio.handlers.get(event)
        assert getattr(handler, "__func__", None) is getattr(compat.AsyncServer, name), (
            f"{COMPAT}: engine.io's {event} handler is no longer AsyncServer.{name} of the server"
        )
        assert list(inspect.signature(getattr(socketio.AsyncServer, name)).parameters)[1:] == [
            "eio_sid",
            "data" if event == "message" else "reason",
        ], f"{COMPAT}: AsyncServer.{name} changed its signature"


async def test_a_session_reaches_our_hooks_and_is_read_written_and_ended_where_we_do(
    server: tuple[_Recording, httpx.AsyncClient],
) -> None:
    sio, client = server
    eio_sid = await _session(client)
    assert sio.has_session(eio_sid)
    assert sio.session_count() == 1
    assert (await client.post(f"{POLLING}&sid={eio_sid}", content=b"40")).text == "OK"
    assert sio.messages == [(eio_sid, "0")]  # the Socket.IO CONNECT, before python-socketio decodes it
    connected = (await client.get(f"{POLLING}&sid={eio_sid}")).text
    sid = orjson.loads(connected[2:])["sid"]
    assert sio.engineio_sid(sid, "/") == eio_sid
    await sio.send_encoded(eio_sid, '2["ping",1]')
    polled = asyncio.create_task(client.get(f"{POLLING}&sid={eio_sid}"))
    await asyncio.wait_for(sio.written(eio_sid), 5)  # the poll took it off the session's queue
    assert (await polled).text == '42["ping",1]'
    await sio.end_session_now(eio_sid)
    assert not sio.has_session(eio_sid)
    assert sio.session_count() == 0
    assert sio.ended == [(eio_sid, sio.eio.reason.SERVER_DISCONNECT)]
    assert (await client.get(f"{POLLING}&sid={eio_sid}")).status_code == 400  # the session is gone


async def test_the_client_manager_starts_when_we_say_and_stops_with_its_redis_client(
    redis_server: RedisServer,
) -> None:
    manager = socketio.AsyncRedisManager(url=redis_server.url, channel="compat-test")
    sio = compat.AsyncServer(async_mode="asgi", client_manager=manager)
    initialized = [sio.manager_initialized]
    connect = inspect.getsource(socketio.AsyncServer._handle_eio_connect)
    assert "if not self.manager_initialized:" in connect, (
        f"{COMPAT}: python-socketio no longer starts its manager at the first connection behind this flag"
    )
    sio.start_client_manager()
    initialized.append(sio.manager_initialized)
    assert initialized == [False, True]
    listening = manager.thread
    assert isinstance(listening, asyncio.Task), f"{COMPAT}: the manager's listening task is not at .thread"
    for _ in range(100):
        if manager.redis is not None:
            break
        await asyncio.sleep(0.05)
    assert manager.redis is not None, f"{COMPAT}: AsyncRedisManager keeps no client at .redis"
    await sio.stop_client_manager(timeout_s=2.0)
    assert listening.done()


def test_bus_delivery_still_goes_through_super_emit() -> None:
    handle_emit = inspect.getsource(AsyncPubSubManager._handle_emit)
    assert "await super().emit(" in handle_emit, (
        f"{COMPAT}: AsyncPubSubManager._handle_emit no longer delivers with super().emit; "
        "cloud/realtime/bus.py's _HubDelivery would no longer see events from the bus"
    )
