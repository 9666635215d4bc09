"""Client mistakes are counted and logged at a bounded rate; junk closes the session.

Before the fix each undecodable Socket.IO packet wrote a 30-line traceback (10,000 packets:
300,000 lines) and the session stayed open, and a signed request torn mid-body wrote a 65-line
ERROR traceback.
"""

from __future__ import annotations

import asyncio

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from devstack.api_process import ApiProcess
from tests.hardening.conftest import StartApi, client_errors, connect, log_lines
from tests.ingest.conftest import WEBHOOK_SECRET
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

# Undecodable, or packets a viewer has no business sending (an event, a ping, an ack).
_JUNK = ["4garbage", "42[", "4{{{{", '42["hello"]', "43[]"]
_SESSIONS = 20
_MAX_BAD = 10


async def _send_junk(ws: websockets.ClientConnection) -> None:
    for sent in range(1_000):
        await ws.send(_JUNK[sent % len(_JUNK)])
    async with asyncio.timeout(10):
        while True:
            await ws.recv()  # until the close the server owes us


async def _junk_until_closed(api: ApiProcess) -> None:
    url = api.url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
    async with websockets.connect(url) as ws:
        await ws.recv()  # the engine.io open packet
        with pytest.raises(ConnectionClosed):
            await _send_junk(ws)


async def test_socketio_junk_is_counted_closes_the_session_and_barely_logs(start_api: StartApi) -> None:
    api = start_api(
        {
            "GIFTWHEEL_REALTIME__MAX_BAD_PACKETS": str(_MAX_BAD),
            "GIFTWHEEL_HTTP__CLIENT_ERROR_LOGS_PER_MIN": "5",
        }
    )
    lines_before = len(log_lines(api))
    for _ in range(_SESSIONS):
        await _junk_until_closed(api)
    await wait_until(lambda: client_errors(api, "socketio_closed") == _SESSIONS, what="every session closed")
    assert client_errors(api, "socketio_bad_packet") >= _SESSIONS * _MAX_BAD
    new_lines = log_lines(api)[lines_before:]
    assert not [line for line in new_lines if "Traceback" in line]
    assert len(new_lines) <= 5


async def test_signed_request_torn_mid_body_is_counted_not_a_traceback(start_api: StartApi) -> None:
    api = start_api({"GIFTWHEEL_WEBHOOK_SECRETS": WEBHOOK_SECRET})
    lines_before = len(log_lines(api))
    for _ in range(_SESSIONS):
        with connect(api) as sock:
            sock.sendall(
                b"POST /v1/events HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
                b"X-Giftwheel-Signature: sha256=00\r\nX-Giftwheel-Timestamp: 1\r\n"
                b'Content-Length: 1000\r\n\r\n{"event": '
            )
    await wait_until(
        lambda: client_errors(api, "client_disconnect") == _SESSIONS, what="every torn request counted"
    )
    new_lines = log_lines(api)[lines_before:]
    assert not [line for line in new_lines if "Traceback" in line or "ERROR" in line]


async def test_a_plain_websocket_viewer_that_keeps_talking_is_closed(start_api: StartApi) -> None:
    api = start_api({"GIFTWHEEL_REALTIME__MAX_BAD_PACKETS": str(_MAX_BAD)})
    async with websockets.connect(api.url.replace("http://", "ws://") + "/v1/realtime") as ws:
        await ws.recv()  # the join state
        with pytest.raises(ConnectionClosed) as closed:
            await _send_junk(ws)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert client_errors(api, "viewer_message") >= _MAX_BAD
    assert client_errors(api, "viewer_closed") == 1
