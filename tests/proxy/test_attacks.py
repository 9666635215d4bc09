"""The attacks of bench/edge_attacks.py on the API, repeated through the front door: nginx answers or
closes them before they hold anything of the API, and what it refuses it refuses at the API's own limits."""

from __future__ import annotations

import re
import socket
import ssl
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import psutil
import pytest
import uvicorn
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from cloud.settings import CloudSettings
from devstack.nginx_server import NginxServer, render, template_defaults
from devstack.ports import free_port
from tests.hardening.test_log_floods import _send_junk as send_junk
from tests.ingest.conftest import API_KEY
from tests.proxy.conftest import CLIENT_ADDRESS, SHORT_TIMEOUTS, FrontDoor
from tests.waiting import wait_until

pytestmark = pytest.mark.slow

# Longer than any of the front door's (shortened) timeouts: a connection still open then was kept.
_PATIENCE_S = 30.0
_CHUNK = b"a" * 65_536
# What the API counts (giftwheel_api_client_errors_total) when a client is slow, stalls or tears a
# request; behind nginx it never sees one.
_NGINX_TAKES = ("header_timeout", "body_timeout", "client_disconnect", "headers_too_large")
# The shipped config's answer to a body over a path's limit.
NGINX_TOO_LARGE = {"error": "too_large", "detail": "body larger than this path accepts"}


@pytest.fixture
async def client(proxied: FrontDoor) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=proxied.url, verify=proxied.ssl_context(), timeout=30) as client:
        yield client


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends before it closes; fails the test if it never does."""
    sock.settimeout(_PATIENCE_S)
    received = b""
    try:
        while chunk := sock.recv(65_536):
            received += chunk
    except (ConnectionResetError, ssl.SSLEOFError):
        pass  # reset_timedout_connection: a timed-out client gets a reset, not a FIN
    except TimeoutError:
        pytest.fail(f"the connection was still open after {_PATIENCE_S} s")
    return received


def _received_so_far(sock: ssl.SSLSocket) -> bytes | None:
    """What the server has sent by now, without waiting (b"" once closed); None if nothing yet.

    Not select(): after the handshake TLS 1.3 servers send session tickets, readable but no answer.
    """
    sock.setblocking(False)
    try:
        return sock.recv(65_536)
    except ssl.SSLWantReadError:
        return None
    except ConnectionResetError:
        return b""
    finally:
        sock.setblocking(True)


def test_a_100_mb_header_is_answered_431_long_before_its_end(proxied: FrontDoor) -> None:
    total = 100 * 1024 * 1024
    with proxied.raw_tls() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: front\r\nX-Big: ")
        sent = 0
        early = None
        try:
            while sent < total and (early := _received_so_far(sock)) is None:
                sock.sendall(_CHUNK)
                sent += len(_CHUNK)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = (early or b"") + _read_until_closed(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 ")
    assert orjson.loads(body)["error"] == "header_too_large"
    assert sent < total


@pytest.mark.parametrize(
    ("request_head", "what"),
    [
        (b"", "a connection that never sends a request"),
        (b"GET /healthz HTTP/1.1\r\nHost: front\r\n", "headers that never end"),
        (
            b"POST /v1/events HTTP/1.1\r\nHost: front\r\nContent-Length: 100\r\n\r\n0123456789",
            "a stalled body",
        ),
    ],
)
def test_slow_and_idle_clients_are_closed_without_reaching_the_api(
    proxied: FrontDoor, request_head: bytes, what: str
) -> None:
    with proxied.raw_tls() as sock:
        sock.sendall(request_head)
        assert _read_until_closed(sock) == b"", what
    # nginx held them, not the API: it never had one to time out.
    assert _absorbed_by_nginx(proxied)


def _absorbed_by_nginx(door: FrontDoor) -> bool:
    """The API counted none of the client mistakes nginx is there to take."""
    return all(door.client_errors(kind) == 0 for kind in _NGINX_TAKES)


def test_a_request_torn_mid_body_never_reaches_the_api(proxied: FrontDoor) -> None:
    for _ in range(5):
        with proxied.raw_tls() as sock:
            sock.sendall(
                b"POST /v1/events HTTP/1.1\r\nHost: front\r\nContent-Type: application/json\r\n"
                b'Content-Length: 1000\r\n\r\n{"event": '
            )
    assert _absorbed_by_nginx(proxied)


def _nginx_ports(api_port: int) -> set[int]:
    """The local ports of nginx's open connections to the API."""
    return {
        getattr(c.laddr, "port", 0)
        for c in psutil.net_connections(kind="tcp")
        if c.status == psutil.CONN_ESTABLISHED and getattr(c.raddr, "port", None) == api_port
    }


def _closed_first_by(api_port: int, nginx_ports: set[int]) -> set[str]:
    """Who closed these connections: TIME_WAIT stays with the side that closed first."""
    closers = set()
    for c in psutil.net_connections(kind="tcp"):
        if c.status != psutil.CONN_TIME_WAIT or not c.raddr:
            continue
        ends = (getattr(c.laddr, "port", None), getattr(c.raddr, "port", None))
        if ends[1] == api_port and ends[0] in nginx_ports:
            closers.add("nginx")
        elif ends[0] == api_port and ends[1] in nginx_ports:
            closers.add("api")
    return closers


async def test_nginx_lets_its_idle_api_connections_go_before_the_api_does(
    client: httpx.AsyncClient, proxied: FrontDoor
) -> None:
    # uvicorn closes a keep-alive connection idle for timeout_keep_alive; a request nginx sent on it
    # at that moment would fail (a POST is not retried). nginx must let it go first.
    api_port = proxied.api.port
    assert (await client.get("/healthz")).status_code == 200
    pooled = _nginx_ports(api_port)
    assert pooled
    await wait_until(lambda: not _nginx_ports(api_port) & pooled, what="the idle connection closed")
    assert _closed_first_by(api_port, pooled) == {"nginx"}
    assert (await client.get("/healthz")).status_code == 200


async def test_socketio_junk_through_the_proxy_closes_the_session(proxied: FrontDoor) -> None:
    closed_before = proxied.client_errors("socketio_closed")
    url = f"{proxied.ws_url}/socket.io/?EIO=4&transport=websocket"
    async with connect(url, ssl=proxied.ssl_context()) as ws:
        await ws.recv()  # the engine.io open packet
        with pytest.raises(ConnectionClosed):
            await send_junk(ws)
    await wait_until(
        lambda: proxied.client_errors("socketio_closed") == closed_before + 1, what="session closed"
    )


def test_a_client_that_never_starts_tls_is_closed(proxied: FrontDoor) -> None:
    with socket.create_connection((proxied.nginx.host, proxied.nginx.port)) as sock:
        assert _read_until_closed(sock) == b""


def test_an_idle_keep_alive_connection_is_closed(proxied: FrontDoor) -> None:
    with proxied.raw_tls() as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: front\r\n\r\n")
        answer = _read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert answer.endswith(b'{"status":"ok"}')


def _body(size: int) -> bytes:
    """A JSON object of exactly size bytes."""
    return b'{"x":"' + b"a" * (size - 8) + b'"}'


@pytest.mark.parametrize(
    ("path", "limit"),
    [
        ("/v1/events", CloudSettings.model_fields["ingest"].default.max_body_bytes),
        ("/v1/events/batch", CloudSettings.model_fields["ingest"].default.max_batch_body_bytes),
        ("/v1/feedback/thingsboard", CloudSettings.model_fields["feedback"].default.max_body_bytes),
    ],
)
async def test_a_body_over_the_apis_limit_is_refused_by_nginx_and_one_at_it_reaches_the_api(
    client: httpx.AsyncClient, path: str, limit: int
) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    over = await client.post(path, content=_body(limit + 1), headers=headers)
    assert (over.status_code, over.json()) == (413, NGINX_TOO_LARGE)
    # At the limit nginx lets it through, and the API judges it (not a gift; no feedback secret).
    at = await client.post(path, content=_body(limit), headers=headers)
    assert (at.status_code, at.json()["error"]) in ((422, "invalid"), (401, "unauthorized"))


async def _chunked(size: int, data: bytes = _CHUNK) -> AsyncIterator[bytes]:
    """size bytes of data as a body without a Content-Length (chunked)."""
    for start in range(0, size, len(data)):
        yield data[: min(len(data), size - start)]


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_polling_post_over_1_mb_is_answered_413(client: httpx.AsyncClient, declared: bool) -> None:
    opened = (await client.get("/socket.io/?EIO=4&transport=polling")).text
    handshake = orjson.loads(opened[1:])
    session = f"/socket.io/?EIO=4&transport=polling&sid={handshake['sid']}"
    size = handshake["maxPayload"] + 1
    content = b"4" + b"a" * (size - 1) if declared else _chunked(size)
    answer = await client.post(session, content=content)
    assert (answer.status_code, answer.json()) == (413, NGINX_TOO_LARGE)
    # The session is still there for a client that sends what engine.io takes, even chunked: nginx
    # forwards the body with the Content-Length the API requires of a polling POST.
    connect_packet = _chunked(2, b"40") if not declared else b"40"
    assert (await client.post(session, content=connect_packet)).text == "OK"


def test_the_proxys_limits_are_the_apis() -> None:
    """giftwheel.env's GIFTWHEEL_* values are the API settings of the same name, at their defaults."""
    defaults = CloudSettings(mode="development")
    shared = {k: v for k, v in template_defaults().items() if k.startswith("GIFTWHEEL_")}
    assert shared
    for name, value in shared.items():
        section, field = name.removeprefix("GIFTWHEEL_").lower().split("__")
        assert int(value) == getattr(getattr(defaults, section), field), name
    # nginx drops an idle API connection before uvicorn's keep-alive timeout (`giftwheel api` keeps
    # uvicorn's default) would.
    upstream_idle_s = int(template_defaults()["NGINX_UPSTREAM_IDLE_TIMEOUT"].removesuffix("s"))
    assert upstream_idle_s < uvicorn.Config(app="").timeout_keep_alive
    rendered = render(template_defaults())
    assert not re.search(r"\$\{[A-Z]", rendered)
    for value in shared.values():
        assert f"client_max_body_size {value};" in rendered


async def test_a_request_line_over_8_kib_is_answered_414(client: httpx.AsyncClient) -> None:
    # nginx's own page: the line was never read, so no error_page can serve it (it would be a 500).
    answer = await client.get("/v1/" + "a" * 9_000)
    assert answer.status_code == 414


def test_an_api_that_does_not_answer_is_503_with_retry_after() -> None:
    with NginxServer(f"127.0.0.1:{free_port()}", overrides=SHORT_TIMEOUTS) as nginx:
        answer = httpx.post(f"{nginx.url}/v1/events", json={}, verify=nginx.ssl_context())
    assert (answer.status_code, answer.json()["error"]) == (503, "unavailable")
    assert answer.headers["retry-after"] == "2"


@pytest.fixture
def two_per_address(proxied: FrontDoor) -> Iterator[NginxServer]:
    """Another nginx before the same API, letting each address have two requests under way."""
    overrides = {**SHORT_TIMEOUTS, "NGINX_CONNECTIONS_PER_ADDRESS": "2"}
    with NginxServer(f"127.0.0.1:{proxied.api.port}", overrides=overrides) as nginx:
        yield nginx


async def test_an_address_holding_too_many_connections_gets_429_others_do_not(
    two_per_address: NginxServer,
) -> None:
    context = two_per_address.ssl_context()
    viewer_url = two_per_address.url.replace("https://", "wss://") + "/v1/realtime"
    held = [await connect(viewer_url, ssl=context) for _ in range(2)]
    with pytest.raises(InvalidStatus) as refused:
        await connect(viewer_url, ssl=context)
    assert refused.value.response.status_code == 429
    transport = httpx.AsyncHTTPTransport(local_address=CLIENT_ADDRESS, verify=context)
    async with httpx.AsyncClient(transport=transport) as elsewhere:
        assert (await elsewhere.get(f"{two_per_address.url}/healthz")).status_code == 200
    for viewer in held:
        await viewer.close()

    async def admitted() -> bool:
        try:
            async with connect(viewer_url, ssl=context):
                return True
        except InvalidStatus:
            return False

    await wait_until(admitted, what="a viewer let in once the address's others closed")
