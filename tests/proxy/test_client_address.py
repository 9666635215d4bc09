"""The API knows the client's address behind the proxy, and believes no one else who claims one.

The client connects from 127.0.0.5, nginx from 127.0.0.1 (the default trusted_proxies). The API
names the client in its "feedback refused" log line, which a wrong secret provokes.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import orjson
import pytest

from devstack.redis_server import RedisServer
from tests.feedback.conftest import Api, progress
from tests.proxy.conftest import CLIENT_ADDRESS, FrontDoor, front_door

pytestmark = pytest.mark.slow

_CLAIMS = {"X-Forwarded-For": "203.0.113.9", "X-Real-IP": "203.0.113.9", "X-Forwarded-Proto": "https"}


def _refused_clients(door: FrontDoor) -> list[str]:
    lines = door.api.log_path.read_text().splitlines()
    records = [orjson.loads(line) for line in lines if line.startswith("{")]
    return [r["client"] for r in records if r.get("event") == "feedback refused"]


async def _refused_feedback_from(url: str, verify: object, **headers: str) -> None:
    transport = httpx.AsyncHTTPTransport(local_address=CLIENT_ADDRESS, verify=verify)  # type: ignore[arg-type]
    async with httpx.AsyncClient(base_url=url, transport=transport, headers=headers) as client:
        answer = await Api(url, client).post_feedback(progress(1), secret="not-the-secret-0123456789")
    assert answer.status_code == 401


@pytest.fixture
def untrusting() -> Iterator[FrontDoor]:
    """nginx before an API that believes no proxy."""
    with RedisServer() as redis:
        yield from front_door(redis.url, GIFTWHEEL_TRUSTED_PROXIES="")


async def test_the_api_sees_the_client_nginx_saw_not_what_the_client_claims(proxied: FrontDoor) -> None:
    await _refused_feedback_from(proxied.url, proxied.ssl_context(), **_CLAIMS)
    assert _refused_clients(proxied)[-1] == CLIENT_ADDRESS


async def test_a_client_reaching_the_api_directly_cannot_claim_an_address(proxied: FrontDoor) -> None:
    await _refused_feedback_from(proxied.api.url, True, **_CLAIMS)
    assert _refused_clients(proxied)[-1] == CLIENT_ADDRESS


async def test_an_api_that_trusts_no_proxy_sees_the_proxy(untrusting: FrontDoor) -> None:
    await _refused_feedback_from(untrusting.url, untrusting.ssl_context())
    assert _refused_clients(untrusting) == ["127.0.0.1"]
