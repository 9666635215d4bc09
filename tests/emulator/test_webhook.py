"""The REST API call node's HTTP client against real sockets: keep-alive reuse, response framings,
a server that closes idle connections, and the bounds that turn a slow API into failed calls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from devstack.http1 import Http1Connection
from devstack.tb_emulator.webhook import HttpPoster

Answer = Callable[[bytes, asyncio.StreamWriter], Awaitable[bool]]  # -> keep the connection


class Server:
    """A raw HTTP/1.1 server: reads each request head and body, lets `answer` write the response."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.connections = 0
        self.requests: list[bytes] = []
        self.url = ""
        self._server: asyncio.Server | None = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                lines = head.lower().split(b"\r\n")
                length = next((int(x.split(b":")[1]) for x in lines if x.startswith(b"content-length:")), 0)
                request = head + await reader.readexactly(length)
                self.requests.append(request)
                if not await self.answer(request, writer):
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def __aenter__(self) -> Server:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/v1/feedback/thingsboard"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


def ok(body: bytes = b'{"ok":true}', extra: bytes = b"") -> Answer:
    async def answer(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return b"connection: close" not in extra.lower()

    return answer


@pytest.fixture
async def poster() -> AsyncIterator[HttpPoster]:
    http = HttpPoster(connections=2, pending_max=1, acquire_timeout_s=0.5, connect_timeout_s=1.0)
    yield http
    await http.close()


HEADERS = {"Content-Type": "application/json", "X-Giftwheel-Secret": "s3cret", "X-Device-Name": "motor_01"}


async def test_calls_reuse_one_keep_alive_connection_and_send_the_node_headers(poster: HttpPoster) -> None:
    async with Server(ok()) as server:
        for n in range(5):
            result = await poster.request("POST", server.url + "?a=1", HEADERS, b'{"n":%d}' % n, 1.0)
            assert (result.status_code, result.reason, result.body, result.error) == (
                200,
                "OK",
                '{"ok":true}',
                None,
            )
    assert server.connections == 1
    head, _, body = server.requests[4].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/feedback/thingsboard?a=1 HTTP/1.1"
    assert {b"X-Giftwheel-Secret: s3cret", b"X-Device-Name: motor_01", b"Content-Length: 7"} <= set(lines)
    assert body == b'{"n":4}'
    assert [c["statusCode"] for c in poster.calls] == [200] * 5


async def test_chunked_and_close_delimited_responses_are_read_whole() -> None:
    async def chunked(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(
            b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
        )
        return True

    async def unframed(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end")
        return False

    for answer, expected in ((chunked, (201, b"abcde")), (unframed, (200, b"to the end"))):
        async with Server(answer) as server:
            connection = Http1Connection("127.0.0.1", int(server.url.split(":")[2].split("/")[0]))
            for _ in range(2):
                response = await connection.request("POST", "/", b"", b"{}")
                assert (response.status, response.body) == expected
            connection.close()
        assert server.connections == (1 if answer is chunked else 2)


async def test_a_connection_the_server_closed_while_idle_is_replaced(poster: HttpPoster) -> None:
    async with Server(ok(extra=b"Connection: close\r\n")) as server:
        results = [await poster.request("POST", server.url, HEADERS, b"{}", 1.0) for _ in range(3)]
    assert [r.status_code for r in results] == [200, 200, 200]
    assert server.connections == 3


async def test_error_statuses_come_back_with_their_body_for_the_failure_relation(poster: HttpPoster) -> None:
    async def refuse(request: bytes, writer: asyncio.StreamWriter) -> bool:
        writer.write(b'HTTP/1.1 401 Unauthorized\r\nContent-Length: 15\r\n\r\n{"error":"bad"}')
        return True

    async with Server(refuse) as server:
        result = await poster.request("POST", server.url, HEADERS, b"{}", 1.0)
    assert (result.status_code, result.reason, result.body, result.error) == (
        401,
        "Unauthorized",
        '{"error":"bad"}',
        None,
    )


async def test_a_slow_api_times_out_and_excess_calls_fail_at_once(poster: HttpPoster) -> None:
    release = asyncio.Event()

    async def stall(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await release.wait()
        return False

    async with Server(stall) as server:
        # 2 connections busy, 1 call waiting for one, the 4th refused without waiting
        calls = [
            asyncio.create_task(poster.request("POST", server.url, HEADERS, b"{}", 0.3)) for _ in range(4)
        ]
        refused = await asyncio.wait_for(calls[3], 0.1)
        assert refused.error is not None
        assert refused.error.startswith("PoolAcquirePendingLimitException")
        assert poster.in_flight == 3
        on_wire = [await call for call in calls[:2]]
        assert all(r.error and r.error.startswith("ReadTimeoutException") for r in on_wire)
        waited = await calls[2]  # got a connection when the first two timed out, then timed out itself
        assert waited.error is not None
        assert waited.error.startswith("ReadTimeoutException")
        release.set()
    assert poster.in_flight == 0


async def test_waiting_for_a_connection_is_bounded_in_time() -> None:
    http = HttpPoster(connections=1, pending_max=5, acquire_timeout_s=0.2)
    release = asyncio.Event()

    async def stall(request: bytes, writer: asyncio.StreamWriter) -> bool:
        await release.wait()
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        return True

    async with Server(stall) as server:
        first = asyncio.create_task(http.request("POST", server.url, HEADERS, b"{}", 5.0))
        await asyncio.sleep(0.05)  # the first call holds the only connection
        second = await http.request("POST", server.url, HEADERS, b"{}", 5.0)
        assert second.error is not None
        assert second.error.startswith("PoolAcquireTimeoutException")
        release.set()
        assert (await first).status_code == 200
    await http.close()


@pytest.mark.parametrize(
    ("url", "headers", "error"),
    [
        ("ftp://example.org/x", {}, "IllegalArgumentException"),
        ("http://127.0.0.1:9/x", {"X-Device-Name": "motor\r\nX-Evil: 1"}, "IllegalArgumentException"),
        ("http://127.0.0.1:9/x", {}, "ConnectionRefusedError"),
    ],
)
async def test_bad_urls_injected_headers_and_refused_connections_are_failed_calls(
    poster: HttpPoster, url: str, headers: dict[str, str], error: str
) -> None:
    result = await poster.request("POST", url, headers, b"{}", 1.0)
    assert result.status_code is None
    assert result.error is not None
    assert result.error.startswith(error)
