"""The front door as a deployment runs it: Debian's nginx with the shipped config, over TLS, before a
real `giftwheel api` process on a real Redis."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devstack.api_process import ApiProcess
from devstack.nginx_server import NginxServer
from devstack.redis_server import RedisServer
from tests.feedback.conftest import FEEDBACK_SECRET
from tests.hardening.conftest import client_errors
from tests.ingest.conftest import API_KEY, METRICS_TOKEN

# The timeouts shortened so that a test waits seconds, not the shipped ones.
SHORT_TIMEOUTS = {
    "NGINX_CLIENT_TIMEOUT": "1s",
    "NGINX_KEEPALIVE_TIMEOUT": "1s",
    "NGINX_UPSTREAM_IDLE_TIMEOUT": "1s",
}
# A second loopback address for "the client": nginx and the API both see it as the peer.
CLIENT_ADDRESS = "127.0.0.5"


@dataclass
class FrontDoor:
    nginx: NginxServer
    api: ApiProcess
    redis_url: str

    @property
    def url(self) -> str:
        return self.nginx.url

    @property
    def ws_url(self) -> str:
        return self.nginx.url.replace("https://", "wss://")

    def ssl_context(self) -> ssl.SSLContext:
        return self.nginx.ssl_context()

    def client_errors(self, kind: str) -> float:
        """giftwheel_api_client_errors_total{kind}, from the API itself as its scraper reads it."""
        return client_errors(self.api, kind)

    def raw_tls(self, source: str = "127.0.0.1") -> ssl.SSLSocket:
        """A TLS connection to nginx, for what no HTTP client sends (a header that never ends)."""
        sock = socket.create_connection((self.nginx.host, self.nginx.port), source_address=(source, 0))
        return self.ssl_context().wrap_socket(sock, server_hostname=self.nginx.host)


def api_env(redis_url: str, **extra: str) -> dict[str, str]:
    return {
        "GIFTWHEEL_REDIS_URL": redis_url,
        "GIFTWHEEL_API_KEYS": API_KEY,
        "GIFTWHEEL_FEEDBACK__SECRET": FEEDBACK_SECRET,
        "GIFTWHEEL_METRICS__TOKEN": METRICS_TOKEN,
        **extra,
    }


def front_door(redis_url: str, **extra_env: str) -> Iterator[FrontDoor]:
    with (
        ApiProcess(api_env(redis_url, **extra_env)) as api,
        NginxServer(f"127.0.0.1:{api.port}", overrides=SHORT_TIMEOUTS) as nginx,
    ):
        yield FrontDoor(nginx, api, redis_url)


@pytest.fixture(scope="module")
def proxied() -> Iterator[FrontDoor]:
    """One Redis, API and nginx for a module's tests (each test uses its own ids and connections)."""
    with RedisServer() as redis:
        yield from front_door(redis.url)
