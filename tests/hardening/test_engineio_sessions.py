"""engine.io sessions count against the viewer limit; long polling bodies are bounded.

Before the fix 20,000 handshakes that never sent their Socket.IO CONNECT were all answered 200
(+184 MB), and a polling POST over 1 MB was never answered.
"""

from __future__ import annotations

import httpx
import orjson
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from devstack.api_process import ApiProcess
from tests.hardening.conftest import StartApi, client_errors, connect, read_until_closed, status_of

pytestmark = pytest.mark.slow

_LIMIT = 20
_POLLING = "/socket.io/?EIO=4&transport=polling"


def _handshake(client: httpx.Client) -> httpx.Response:
    return client.get(_POLLING)


def _sid(handshake: httpx.Response) -> str:
    sid: str = orjson.loads(handshake.text[1:])["sid"]  # "0{...}": the engine.io open packet
    return sid


async def test_handshakes_without_connect_fill_the_viewer_limit(start_api: StartApi) -> None:
    api = start_api({"GIFTWHEEL_REALTIME__MAX_CONNECTIONS": str(_LIMIT)})
    with httpx.Client(base_url=api.url, timeout=5) as client:
        assert all(_handshake(client).status_code == 200 for _ in range(_LIMIT))
        refused = _handshake(client)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["error"] == "viewers_full"
    # The plain WebSocket viewers share the limit.
    ws_url = api.url.replace("http://", "ws://") + "/v1/realtime"
    async with websockets.connect(ws_url) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1013
    assert client_errors(api, "viewers_full") == 1


def test_a_handshake_that_connects_becomes_the_last_viewer(start_api: StartApi) -> None:
    """At the limit's last place, the session's own CONNECT is admitted (it already holds the place)."""
    api = start_api({"GIFTWHEEL_REALTIME__MAX_CONNECTIONS": "1"})
    with httpx.Client(base_url=api.url, timeout=5) as client:
        sid = _sid(_handshake(client))
        assert client.post(f"{_POLLING}&sid={sid}", content=b"40").text == "OK"
        connected = client.get(f"{_POLLING}&sid={sid}").text
        assert connected.startswith("40{"), connected  # CONNECT answered, not CONNECT_ERROR (44)
        assert _handshake(client).status_code == 503


def _polling_post(api: ApiProcess, sid: str, head: bytes) -> bytes:
    with connect(api, timeout_s=10) as sock:
        sock.sendall(f"POST {_POLLING}&sid={sid} HTTP/1.1\r\nHost: api\r\n".encode() + head)
        return read_until_closed(sock)


def test_polling_post_over_the_limit_is_answered_413(start_api: StartApi) -> None:
    api = start_api()
    with httpx.Client(base_url=api.url, timeout=5) as client:
        sid = _sid(_handshake(client))
        assert client.post(f"{_POLLING}&sid={sid}", content=b"40").text == "OK"
        big = client.post(f"{_POLLING}&sid={sid}", content=b"4" + b"x" * 1_500_000)
        assert big.status_code == 413
        assert big.json()["error"] == "too_large"
    unsized = _polling_post(api, sid, b"Transfer-Encoding: chunked\r\n\r\n2\r\n40\r\n0\r\n\r\n")
    assert status_of(unsized) == 411
    assert client_errors(api, "too_large") == 1
