"""Attacks on the API's public edge, against a real `giftwheel api` process over raw sockets."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.api_process import ApiProcess
from devstack.redis_server import RedisServer
from tests.ingest.conftest import API_KEY, METRICS_AUTH, METRICS_TOKEN

StartApi = Callable[..., ApiProcess]


@pytest.fixture
def start_api(redis_server: RedisServer) -> Iterator[StartApi]:
    """Start `giftwheel api` with these GIFTWHEEL_* settings, stopped after the test."""
    with ExitStack() as stack:

        def start(settings: dict[str, str] | None = None, *, max_open_files: int | None = None) -> ApiProcess:
            env = {
                "GIFTWHEEL_REDIS_URL": redis_server.url,
                "GIFTWHEEL_API_KEYS": API_KEY,
                "GIFTWHEEL_METRICS__TOKEN": METRICS_TOKEN,
                **(settings or {}),
            }
            return stack.enter_context(ApiProcess(env, max_open_files=max_open_files))

        yield start


def connect(api: ApiProcess, timeout_s: float = 30.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", api.port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes; socket.timeout if it never does."""
    received = b""
    while chunk := sock.recv(65_536):
        received += chunk
    return received


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def client_errors(api: ApiProcess, kind: str) -> float:
    """giftwheel_api_client_errors_total{kind} as the API's /metrics reports it."""
    response = httpx.get(f"{api.url}/metrics", headers=METRICS_AUTH, timeout=5)
    assert response.status_code == 200, response.text
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "giftwheel_api_client_errors_total" and sample.labels == {"kind": kind}:
                return sample.value
    return 0.0


def log_lines(api: ApiProcess) -> list[str]:
    return api.log_path.read_text(errors="replace").splitlines()
