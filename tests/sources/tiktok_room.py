"""TikTok's side of a TikTokLive connection, played from a recorded sequence.

Each client is the real ``TikTokLiveClient``; only its network boundary is replaced: the HTTP
routes (room id, live check, sign server) and the WebSocket's frame generator. The library's own
start(), frame loop, protobuf parser, parse-failure logging and event emitter all run.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from typing import Any
from unittest.mock import AsyncMock

import httpx
import orjson
import pytest
from pytest_mock import MockerFixture

from giftwheel.clock import ManualClock

TikTokLive = pytest.importorskip("TikTokLive")
from TikTokLive import TikTokLiveClient  # noqa: E402
from TikTokLive.client.errors import SignatureRateLimitError  # noqa: E402
from TikTokLive.proto import (  # noqa: E402
    ProtoMessageFetchResult,
    ProtoMessageFetchResultBaseProtoMessage,
    WebcastGiftMessage,
)

ROOM_ID = 7_300_000_000_000_000_001


def payload_of(step: dict[str, Any]) -> bytes:
    """The protobuf bytes TikTok would push for one recorded step."""
    if "gift" in step:
        return bytes(WebcastGiftMessage.from_dict(step["gift"]))
    if "garbage_payload_b64" in step:
        return base64.b64decode(step["garbage_payload_b64"])
    try:
        return bytes(WebcastGiftMessage.from_dict(step["garbage_gift"]))
    except ValueError:
        # Not even a protobuf message: the bytes of the broken JSON itself.
        return orjson.dumps(step["garbage_gift"])


def rate_limited(retry_after_s: int) -> SignatureRateLimitError:
    response = httpx.Response(
        429, headers={"Retry-After": str(retry_after_s), "RateLimit-Remaining": "0", "RateLimit-Reset": "0"}
    )
    return SignatureRateLimitError(
        "Too many connections", "Too many connections started, try again in %s seconds", response=response
    )


class RecordedRoom:
    """Hands out one client per connection attempt; attempt n plays session n."""

    def __init__(self, steps: list[dict[str, Any]], clock: ManualClock, mocker: MockerFixture) -> None:
        # Per attempt: the steps it plays, an error its sign-server call raises, or None when
        # TikTok reports the room offline.
        self.sessions: list[list[dict[str, Any]] | Exception | None] = [[]]
        for step in steps:
            if step.get("disconnect"):
                self.sessions.append([])
            else:
                session = self.sessions[-1]
                assert isinstance(session, list)
                session.append(step)
        self._clock = clock
        self._mocker = mocker
        self.attempts = 0
        self.room_lookups: list[AsyncMock] = []
        self.sleeps: list[float] = []
        self.done = asyncio.Event()

    def new_client(self, unique_id: str) -> Any:
        client = TikTokLiveClient(unique_id)
        session = self.sessions[self.attempts] if self.attempts < len(self.sessions) else None
        self.attempts += 1
        web = client._web
        lookup = AsyncMock(return_value=ROOM_ID)
        self.room_lookups.append(lookup)
        self._mocker.patch.object(web, "fetch_room_id_from_html", lookup)
        self._mocker.patch.object(web, "fetch_is_live", AsyncMock(return_value=session is not None))
        signed = AsyncMock(return_value=ProtoMessageFetchResult())
        if isinstance(session, Exception):
            signed.side_effect = session
        self._mocker.patch.object(web, "fetch_signed_websocket", signed)
        if isinstance(session, list):
            client._ws.connect = lambda **_kwargs: self._frames(session)
        return client

    async def _frames(self, session: list[dict[str, Any]]) -> AsyncIterator[Any]:
        yield ProtoMessageFetchResult(is_first=True)
        for step in session:
            if "advance_s" in step:
                self._clock.advance(step["advance_s"])
                await asyncio.sleep(0.05)  # the sweeper's turn
                continue
            message = ProtoMessageFetchResultBaseProtoMessage(
                method="WebcastGiftMessage", payload=payload_of(step)
            )
            yield ProtoMessageFetchResult(messages=[message])

    async def sleep(self, seconds: float) -> None:
        """The source's sleep: time passes on the manual clock; after the last session, forever."""
        self.sleeps.append(seconds)
        self._clock.advance(seconds)
        if self.attempts >= len(self.sessions):
            self.done.set()
            await asyncio.Event().wait()
