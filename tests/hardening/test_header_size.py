"""A request head past http.max_header_bytes is refused with 431, never read whole.

Before the fix a 100 MB header was read to its end and answered 200 (the API's RSS +100 MB).
"""

from __future__ import annotations

import select

import httpx
import orjson
import psutil
import pytest

from cloud.api.settings import HttpSettings
from tests.hardening.conftest import StartApi, client_errors, connect, read_until_closed, status_of

pytestmark = pytest.mark.slow

_LIMIT = HttpSettings().max_header_bytes
_CHUNK = b"a" * 65_536


def test_endless_header_is_refused_at_the_bound(start_api: StartApi) -> None:
    api = start_api()
    assert api.pid is not None
    rss_before = psutil.Process(api.pid).memory_info().rss
    sent = 0
    with connect(api) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: api\r\nX-Big: ")
        # A 100 MB header, sent as a client that reads while it writes sends it: until
        # the server answers.
        while sent < 100_000_000 and not select.select([sock], [], [], 0)[0]:
            sock.sendall(_CHUNK)
            sent += len(_CHUNK)
        response = read_until_closed(sock)
    assert sent < 100_000_000, "the server read the whole 100 MB header"
    assert status_of(response) == 431
    assert orjson.loads(response.split(b"\r\n\r\n", 1)[1])["error"] == "headers_too_large"
    assert psutil.Process(api.pid).memory_info().rss - rss_before < 50_000_000
    assert client_errors(api, "headers_too_large") == 1


def test_many_headers_within_one_read_are_refused(start_api: StartApi) -> None:
    """A head that arrives whole, in one read, is measured as parsed, not as bytes read."""
    api = start_api()
    headers = {f"x-h{i}": "v" * 100 for i in range(_LIMIT // 100)}
    refused = httpx.get(f"{api.url}/healthz", headers=headers, timeout=5)
    assert refused.status_code == 431
    under = {f"x-h{i}": "v" * 100 for i in range(_LIMIT // 200)}
    assert httpx.get(f"{api.url}/healthz", headers=under, timeout=5).status_code == 200
