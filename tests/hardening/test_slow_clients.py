"""Idle and slow connections are closed; the connection cap refuses, /healthz answers.

Each test holds what an attacker would hold and asserts what the server does about it. The
timeouts are short settings, and the tests wait far longer than them: before the fix the server
never closed these connections, so the reads below timed out.
"""

from __future__ import annotations

import socket
import time

import httpx
import orjson
import pytest

from tests.hardening.conftest import StartApi, client_errors, connect, log_lines, read_until_closed, status_of
from tests.ingest.conftest import API_KEY

pytestmark = pytest.mark.slow

_SHORT = {"GIFTWHEEL_HTTP__HEADER_TIMEOUT_S": "1", "GIFTWHEEL_HTTP__BODY_TIMEOUT_S": "1"}


def _trickle(sock: socket.socket, data: bytes, gap_s: float) -> int:
    """Send data a byte at a time until the server closes; how many bytes went."""
    for sent, byte in enumerate(data):
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return sent
        time.sleep(gap_s)
    return len(data)


def test_idle_connection_gets_408_and_is_closed(start_api: StartApi) -> None:
    api = start_api(_SHORT)
    with connect(api) as sock:
        response = read_until_closed(sock)
    assert status_of(response) == 408
    assert b"connection: close" in response
    assert client_errors(api, "header_timeout") == 1


def test_headers_sent_a_byte_at_a_time_are_cut_off(start_api: StartApi) -> None:
    api = start_api(_SHORT)
    head = b"GET /healthz HTTP/1.1\r\nHost: api\r\n" + b"X-Slow: " + b"a" * 400 + b"\r\n\r\n"
    with connect(api) as sock:
        sent = _trickle(sock, head, gap_s=0.05)
        response = read_until_closed(sock)
    assert sent < len(head), "the server read the whole trickled head"
    assert status_of(response) == 408
    assert orjson.loads(response.split(b"\r\n\r\n", 1)[1])["error"] == "header_timeout"


def test_a_kept_alive_connection_gets_a_head_deadline_for_each_request(start_api: StartApi) -> None:
    """uvicorn's keep-alive timeout stops at the next request's first byte; the head deadline not."""
    api = start_api(_SHORT)
    with connect(api) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: api\r\n\r\n")
        first = sock.recv(65_536)
        assert status_of(first) == 200
        sent = _trickle(sock, b"GET /healthz HTTP/1.1\r\nHost: api\r\nX-Slow: " + b"a" * 400, gap_s=0.05)
        second = read_until_closed(sock)
    assert sent < 400
    assert status_of(second) == 408


def test_body_sent_a_byte_at_a_time_is_cut_off_without_a_traceback(start_api: StartApi) -> None:
    api = start_api(_SHORT)
    body = orjson.dumps({"event": "gift", "pad": "x" * 400})
    head = (
        b"POST /v1/events HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\n"
        + f"Authorization: Bearer {API_KEY}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    )
    with connect(api) as sock:
        sock.sendall(head)
        sent = _trickle(sock, body, gap_s=0.05)
        response = read_until_closed(sock)
    assert sent < len(body), "the server read the whole trickled body"
    assert status_of(response) == 408
    assert orjson.loads(response.split(b"\r\n\r\n", 1)[1])["error"] == "body_timeout"
    assert client_errors(api, "body_timeout") == 1
    assert not [line for line in log_lines(api) if "Traceback" in line]


def test_connection_cap_answers_503_with_retry_after_and_healthz_still_answers(start_api: StartApi) -> None:
    cap, reserve = 20, 4
    api = start_api(
        {
            "GIFTWHEEL_HTTP__MAX_CONNECTIONS": str(cap),
            "GIFTWHEEL_HTTP__RESERVE_CONNECTIONS": str(reserve),
            "GIFTWHEEL_HTTP__BUSY_RETRY_AFTER_S": "7",
        }
    )
    held = [connect(api) for _ in range(cap)]
    try:
        # Make sure the server has taken all of them before the next one arrives.
        for sock in held:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: api\r\n")  # never finished
        with connect(api) as sock:
            sock.sendall(b"GET /v1/events HTTP/1.1\r\nHost: api\r\n\r\n")
            refused = read_until_closed(sock)
        assert status_of(refused) == 503
        assert b"retry-after: 7" in refused.lower()
        assert orjson.loads(refused.split(b"\r\n\r\n", 1)[1])["error"] == "connections_full"
        assert httpx.get(f"{api.url}/healthz", timeout=5).status_code == 200
        # Idle connections past the cap cannot keep a health check out: the oldest gives way.
        waiting = [connect(api) for _ in range(reserve * 3)]
        try:
            assert httpx.get(f"{api.url}/healthz", timeout=5).status_code == 200
            assert httpx.get(f"{api.url}/readyz", timeout=5).status_code == 200
        finally:
            for sock in waiting:
                sock.close()
    finally:
        for sock in held:
            sock.close()
    assert client_errors(api, "connections_full") >= 1 + reserve * 2


def test_idle_flood_past_the_open_file_limit_leaves_healthz_answering(start_api: StartApi) -> None:
    """20,200 idle connections took every descriptor: the API answered nothing until they left.
    Here the API gets 1,024 descriptors and the flood 1,200 connections."""
    api = start_api({"GIFTWHEEL_HTTP__HEADER_TIMEOUT_S": "60"}, max_open_files=1_024)
    flood: list[socket.socket] = []
    try:
        for _ in range(1_200):
            flood.append(connect(api))
        assert httpx.get(f"{api.url}/healthz", timeout=5).status_code == 200
        assert httpx.post(f"{api.url}/v1/events", json={}, timeout=5).status_code == 503
    finally:
        for sock in flood:
            sock.close()
    assert any("connection cap lowered to fit the open-file limit" in line for line in log_lines(api))
    assert httpx.post(f"{api.url}/v1/events", json={}, timeout=5).status_code == 401
