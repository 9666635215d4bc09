"""API keys, HMAC signatures and the replay window; no open door outside development mode."""

from __future__ import annotations

import time

import orjson
import pytest
from pydantic import SecretStr, ValidationError
from redis.asyncio import Redis

from cloud.api.app import OpenDoorError, create_app
from cloud.api.auth import Authenticator, AuthError, sign
from cloud.settings import CloudSettings
from giftwheel.cli import main
from giftwheel.clock import SystemClock
from giftwheel.contracts import EVENTS_STREAM
from tests.ingest.conftest import WEBHOOK_SECRET, Api, gift


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-key-0123456789"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer"},
    ],
    ids=["missing", "wrong key", "wrong scheme", "empty token"],
)
async def test_unauthenticated_is_401_and_stores_nothing(
    api: Api, redis: Redis, headers: dict[str, str]
) -> None:
    response = await api.client.post("/v1/events", json=gift(), headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert await redis.xlen(EVENTS_STREAM) == 0


def signed(body: bytes, *, secret: str = WEBHOOK_SECRET, at: float | None = None) -> dict[str, str]:
    timestamp = str(int(time.time() if at is None else at))
    return {
        "content-type": "application/json",
        "x-giftwheel-timestamp": timestamp,
        "x-giftwheel-signature": sign(secret, timestamp, body),
    }


async def test_signed_webhook_is_accepted(api: Api, redis: Redis) -> None:
    body = orjson.dumps(gift(eventId="hook:1"))
    response = await api.client.post("/v1/events", content=body, headers=signed(body))
    assert response.status_code == 202
    assert await redis.xlen(EVENTS_STREAM) == 1


async def test_signature_replay_inside_window_is_a_duplicate(api: Api, redis: Redis) -> None:
    body = orjson.dumps(gift())  # no eventId: the id is derived from the body
    headers = signed(body)
    first = await api.client.post("/v1/events", content=body, headers=headers)
    replay = await api.client.post("/v1/events", content=body, headers=headers)
    assert (first.status_code, replay.status_code) == (202, 200)
    assert replay.json()["duplicate"] is True
    assert await redis.xlen(EVENTS_STREAM) == 1


@pytest.mark.parametrize(
    ("case", "mangle"),
    [
        ("old timestamp", lambda body: (body, signed(body, at=time.time() - 301))),
        ("future timestamp", lambda body: (body, signed(body, at=time.time() + 301))),
        ("wrong secret", lambda body: (body, signed(body, secret="not-the-secret-123456"))),
        ("body changed", lambda body: (body.replace(b'"Rose"', b'"Lion"'), signed(body))),
        (
            "timestamp changed",
            lambda body: (
                body,
                {**signed(body), "x-giftwheel-timestamp": str(int(time.time()) - 1)},
            ),
        ),
        ("not a number", lambda body: (body, {**signed(body), "x-giftwheel-timestamp": "soon"})),
        ("5,000 digits", lambda body: (body, {**signed(body), "x-giftwheel-timestamp": "9" * 5_000})),
        # Latin-1 0xB2 is "²" to the server: str.isdigit() says yes, int() says no.
        ("not an ASCII digit", lambda body: (body, {**signed(body), "x-giftwheel-timestamp": b"\xb2"})),
        ("signed", lambda body: (body, {**signed(body), "x-giftwheel-timestamp": "+1700000000"})),
    ],
)
async def test_bad_signature_is_401(api: Api, redis: Redis, case: str, mangle: object) -> None:
    assert callable(mangle)
    content, headers = mangle(orjson.dumps(gift()))
    response = await api.client.post("/v1/events", content=content, headers=headers)
    assert response.status_code == 401, case
    assert await redis.xlen(EVENTS_STREAM) == 0


def test_production_without_keys_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIFTWHEEL_API_KEYS", raising=False)
    monkeypatch.delenv("GIFTWHEEL_WEBHOOK_SECRETS", raising=False)
    monkeypatch.delenv("GIFTWHEEL_MODE", raising=False)
    settings = CloudSettings()  # a worker may load these: it serves no ingest
    with pytest.raises(OpenDoorError, match="open to anyone"):
        create_app(settings)
    assert main(["api", "--port", "1"]) == 2
    assert create_app(CloudSettings(mode="development")) is not None


def test_short_keys_are_refused_in_production() -> None:
    with pytest.raises(ValidationError, match="at least 16"):
        CloudSettings(api_keys="short")


def test_keys_parse_from_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GIFTWHEEL_API_KEYS", "first-key-0123456789, second-key-0123456789")
    keys = [k.get_secret_value() for k in CloudSettings().api_keys]
    assert keys == ["first-key-0123456789", "second-key-0123456789"]


def test_remembered_verdicts_never_let_a_wrong_key_in() -> None:
    auth = Authenticator(
        [SecretStr("key-one-0123456789abcdef")], [], signature_window_s=300, clock=SystemClock()
    )
    for _ in range(2):  # the second time from the remembered verdict
        assert auth.check_bearer("Bearer key-one-0123456789abcdef").kind == "api-key"
    for wrong in ("Bearer key-one-0123456789abcdeF", "Bearer key-one", "Basic key-one-0123456789abcdef", ""):
        with pytest.raises(AuthError):
            auth.check_bearer(wrong)
    for n in range(200):  # a flood of wrong keys is not remembered
        with pytest.raises(AuthError):
            auth.check_bearer(f"Bearer wrong-{n}")
    assert len(auth._accepted) == 1
