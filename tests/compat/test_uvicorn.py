"""What cloud/compat/uvicorn.py assumes of uvicorn still holds: over a real TCP connection, uvicorn's
own protocols serve a request and a WebSocket handshake, and the state we read is where we read it."""

from __future__ import annotations

import ast
import asyncio
import inspect
import socket
import textwrap
from collections.abc import Callable
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cloud.compat import uvicorn as compat
from tests.compat.versions import assert_checked_range

COMPAT = "cloud/compat/uvicorn.py"
Asgi = Callable[[dict[str, Any], Any, Any], Any]


@pytest.mark.parametrize("distribution", sorted(compat.CHECKED))
def test_installed_and_allowed_versions_are_the_checked_ones(distribution: str) -> None:
    assert_checked_range(distribution, compat.CHECKED[distribution], COMPAT)


def test_data_received_is_still_the_steps_the_guarded_protocol_reimplements() -> None:
    tree = ast.parse(textwrap.dedent(inspect.getsource(HttpToolsProtocol.data_received)))
    calls = [
        n.func.attr for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
    ]
    assert calls == [
        "_unset_keepalive_if_required",
        "feed_data",
        "warning",
        "send_400_response",
        "_should_upgrade",
        "handle_websocket_upgrade",
        "_unsupported_upgrade_warning",
    ], f"{COMPAT}: uvicorn's data_received changed; re-check GuardedHttpToolsProtocol.data_received"
    for name in ("_unset_keepalive_if_required", "_should_upgrade", "_unsupported_upgrade_warning"):
        assert list(inspect.signature(getattr(HttpToolsProtocol, name)).parameters) == ["self"], (
            f"{COMPAT}: HttpToolsProtocol.{name} changed its signature"
        )


async def _serve(
    protocol_class: type[Any], app: Asgi
) -> tuple[Any, asyncio.StreamReader, asyncio.StreamWriter]:
    """``protocol_class`` serving ``app`` on one end of a loopback TCP connection; the other end's streams."""
    config = compat.Config(app=app, ws="websockets-sansio", lifespan="off", log_level="warning")
    config.load()
    protocol = protocol_class(config, compat.ServerState(), {})
    with socket.create_server(("127.0.0.1", 0)) as listener:
        theirs = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    await asyncio.get_running_loop().connect_accepted_socket(lambda: protocol, ours)
    reader, writer = await asyncio.open_connection(sock=theirs)
    return protocol, reader, writer


@pytest.fixture
def waiting_app() -> tuple[Asgi, asyncio.Queue[dict[str, Any]]]:
    """An app that reads its request body to the end and reports what it received."""
    seen: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            await seen.put(message)
            if message["type"] == "http.disconnect" or not message.get("more_body", False):
                break
        if message["type"] == "http.request":
            await send({"type": "http.response.start", "status": 204, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    return app, seen


async def test_the_http_state_we_read_and_the_request_we_abort(
    waiting_app: tuple[Asgi, asyncio.Queue[dict[str, Any]]],
) -> None:
    app, seen = waiting_app
    protocol, _reader, writer = await _serve(compat.HttpProtocol, app)
    assert protocol in protocol.connections
    assert protocol.client is not None
    assert protocol.cycle is None
    assert not protocol.abort_request()
    writer.write(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab")
    assert (await asyncio.wait_for(seen.get(), 5))["body"] == b"ab"
    assert protocol.url == b"/x"
    assert (b"host", b"t") in protocol.headers
    assert protocol.parser is not None
    assert protocol.flow is not None
    assert protocol.loop is not None
    assert not protocol.abort_request()  # the response has not started: the app sees a disconnect
    assert (await asyncio.wait_for(seen.get(), 5))["type"] == "http.disconnect"
    writer.write(b"cd")
    writer.close()


async def test_a_finished_request_is_not_aborted_and_the_next_can_be_the_last(
    waiting_app: tuple[Asgi, asyncio.Queue[dict[str, Any]]],
) -> None:
    app, seen = waiting_app
    protocol, reader, writer = await _serve(compat.HttpProtocol, app)
    writer.write(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 204")
    assert protocol.cycle.response_complete
    assert not protocol.abort_request()
    writer.write(b"POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nab")
    await asyncio.wait_for(seen.get(), 5)
    await asyncio.wait_for(seen.get(), 5)  # the second request's first part: its cycle is current
    protocol.close_after_response()
    writer.write(b"cd")
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 204")
    assert await asyncio.wait_for(reader.read(), 5) == b""  # closed once answered
    writer.close()


class _Offering(compat.WebSocketProtocol):
    def handle_connect(self, event: compat.Request) -> None:
        super().handle_connect(event)
        if self.accepted_without_extensions():
            self.offer_extension("test.offered", {"by": "handle_connect"})


async def test_an_extension_offered_after_the_handshake_is_in_the_scope_the_app_reads() -> None:
    scopes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await scopes.put(scope)
        await receive()
        await send({"type": "websocket.accept"})
        await receive()

    protocol, reader, writer = await _serve(_Offering, app)
    assert not protocol.can_write_now()
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    scope = await asyncio.wait_for(scopes.get(), 5)
    assert scope["extensions"]["test.offered"] == {"by": "handle_connect"}, (
        f"{COMPAT}: handle_connect ran the app before returning, or builds its scope elsewhere"
    )
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101")
    assert protocol.can_write_now()
    writer.close()
    await asyncio.sleep(0.05)
    assert not protocol.can_write_now()
