"""The TikTok LIVE source: one supervised TikTokLive connection per room.

TikTokLive is AGPL-3.0 and optional (extra ``tiktok``); it is imported here only, when the source
starts, so nothing else in giftwheel loads it. The library does not reconnect by itself: this
module restarts the connection with backoff, spends a local budget of sign-server calls (each
start is one) and honours the sign server's 429s. The gift handler only adapts and hands over to
the ingest client. Payloads the library cannot parse are dropped by it with a log line; a log
handler counts them (``parse_failures{stage="library"}``) so a schema drift shows up as an alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog

from cloud.sources.adapters import frame_from_tiktoklive
from cloud.sources.backoff import Backoff
from cloud.sources.budget import SignBudget
from cloud.sources.metrics import SourceMetrics
from cloud.sources.pipeline import GiftPipeline
from cloud.sources.settings import TikTokSettings
from giftwheel.clock import Clock

log = structlog.get_logger(__name__)

Sleep = Callable[[float], Awaitable[None]]
# Bounds for a wait the sign server asks for (its headers could be garbled).
_MIN_RETRY_S = 1.0
_MAX_RETRY_S = 86_400.0


class SourceUnavailable(RuntimeError):
    """The source cannot run here (its optional library is missing)."""


@dataclass(frozen=True)
class TikTokLibrary:
    """The parts of TikTokLive this source touches: its whole boundary, in one place."""

    new_client: Callable[[str], Any]
    gift_event: type[Any]
    connect_event: type[Any]
    live_end_event: type[Any]
    message_event: type[Any]
    offline_error: type[Exception]
    rate_limit_error: type[Exception]
    blocked_error: type[Exception]
    web_defaults: Any


def load_library() -> TikTokLibrary:
    try:
        from TikTokLive import TikTokLiveClient
        from TikTokLive.client.errors import (
            SignatureRateLimitError,
            UserOfflineError,
            WebcastBlockedError,
        )
        from TikTokLive.client.web.web_settings import WebDefaults
        from TikTokLive.events import (
            ConnectEvent,
            GiftEvent,
            LiveEndEvent,
            WebsocketResponseEvent,
        )
    except ImportError as exc:
        raise SourceUnavailable(
            f"the TikTok source needs TikTokLive ({exc}): pip install 'giftwheel[tiktok]' "
            "(TikTokLive is AGPL-3.0; it runs only in this separate process)"
        ) from exc
    return TikTokLibrary(
        new_client=TikTokLiveClient,
        gift_event=GiftEvent,
        connect_event=ConnectEvent,
        live_end_event=LiveEndEvent,
        message_event=WebsocketResponseEvent,
        offline_error=UserOfflineError,
        rate_limit_error=SignatureRateLimitError,
        blocked_error=WebcastBlockedError,
        web_defaults=WebDefaults,
    )


class ParseFailureCounter(logging.Handler):
    """Counts the payloads TikTokLive drops because it cannot parse them (its own log lines)."""

    _MARKERS = ("Failed to parse", "Skipped")

    def __init__(self, metrics: SourceMetrics) -> None:
        super().__init__(level=logging.DEBUG)
        self._metrics = metrics

    def emit(self, record: logging.LogRecord) -> None:
        if not isinstance(record.msg, str) or not record.msg.startswith(self._MARKERS):
            return
        self._metrics.parse_failures("library").inc()
        method = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        log.error("TikTokLive dropped a payload it could not parse", method=str(method)[:64])


def retry_after_s(response: Any, now_s: float, default_s: float) -> float:
    """The wait a 429 asks for: Retry-After seconds, or RateLimit-Reset (seconds or a unix time)."""
    headers = getattr(response, "headers", None) or {}
    for name in ("Retry-After", "RateLimit-Reset", "X-RateLimit-Reset"):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(str(value))
        except (TypeError, ValueError):
            continue
        if seconds > 1_000_000_000:  # an absolute unix time, not a duration
            seconds -= now_s
        return min(max(seconds, _MIN_RETRY_S), _MAX_RETRY_S)
    return default_s


class TikTokSource:
    def __init__(
        self,
        settings: TikTokSettings,
        *,
        unique_id: str,
        pipeline: GiftPipeline,
        metrics: SourceMetrics,
        clock: Clock,
        library: TikTokLibrary | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._settings = settings
        self._unique_id = unique_id
        self._pipeline = pipeline
        self._metrics = metrics
        self._clock = clock
        self._library = library
        self._sleep = sleep
        self._budget = SignBudget(settings.budget, clock)
        self._backoff = Backoff(settings.backoff)
        self._lost_at: float | None = None
        # Scraping the room id from TikTok's HTML on every reconnect invites blocks: reuse it
        # until the room is reported offline (a new live gets a new room).
        self._room_id: int | None = None

    async def run(self) -> None:
        """Keep one connection to the room until cancelled."""
        library = self._library or load_library()
        library.web_defaults.tiktok_sign_url = self._settings.sign_url
        if self._settings.sign_api_key is not None:
            library.web_defaults.tiktok_sign_api_key = self._settings.sign_api_key.get_secret_value()
        counter = ParseFailureCounter(self._metrics)
        library_log = logging.getLogger("TikTokLive")
        library_log.addHandler(counter)
        try:
            while True:
                wait_s = self._budget.wait_s()
                if wait_s > 0:
                    log.warning("sign-server budget spent; waiting", wait_s=round(wait_s, 1))
                    await self._sleep(wait_s)
                    continue
                delay_s = await self._connect_once(library)
                self._metrics.reconnects.inc()
                await self._sleep(delay_s)
        finally:
            library_log.removeHandler(counter)

    async def _connect_once(self, library: TikTokLibrary) -> float:
        """One connection from start to its end; returns how long to wait before the next."""
        self._budget.spend()
        self._metrics.sign_calls.inc()
        client = library.new_client(self._unique_id)
        # Known schema bugs would otherwise be logged below ERROR, and gifts could vanish unseen.
        client.parse_error_ignorelist = []
        client.add_listener(library.gift_event, self._on_gift)
        client.add_listener(library.connect_event, self._on_connect)
        client.add_listener(library.live_end_event, self._on_live_end)
        client.add_listener(library.message_event, self._on_message)
        try:
            task = await client.start(fetch_live_check=True, room_id=self._room_id)
            self._room_id = client.room_id
            await task
            log.warning("tiktok disconnected", room=self._unique_id)
            return self._backoff.next_delay_s()
        except library.offline_error:
            self._room_id = None
            log.info("tiktok room offline", room=self._unique_id, retry_s=self._settings.offline_retry_s)
            return self._settings.offline_retry_s
        except library.rate_limit_error as exc:
            self._metrics.sign_rate_limited.inc()
            wait_s = retry_after_s(
                getattr(exc, "response", None), self._clock.wall_ms() / 1000, self._settings.backoff.max_s
            )
            self._budget.block_for(wait_s)
            log.warning("sign server rate limit", room=self._unique_id, wait_s=wait_s)
            return 0.0
        except library.blocked_error as exc:
            log.error("TikTok refused the connection", room=self._unique_id, error=str(exc))
            return self._settings.backoff.max_s
        except Exception as exc:  # the library raises anything from scraping, HTTP and WebSocket
            log.warning("tiktok connection failed", room=self._unique_id, error=repr(exc)[:300])
            return self._backoff.next_delay_s()
        finally:
            if self._lost_at is None:
                self._lost_at = self._clock.monotonic()
            self._metrics.connected.set(0)
            with contextlib.suppress(Exception):
                await client.disconnect()

    def _on_connect(self, _event: Any) -> None:
        self._metrics.connected.set(1)
        if self._lost_at is not None:
            self._metrics.gap_seconds.observe(self._clock.monotonic() - self._lost_at)
        self._lost_at = None
        self._backoff.reset()
        log.info("tiktok connected", room=self._unique_id)

    def _on_live_end(self, _event: Any) -> None:
        log.info("tiktok live ended", room=self._unique_id)

    def _on_message(self, _event: Any) -> None:
        self._metrics.messages.inc()

    def _on_gift(self, event: Any) -> None:
        try:
            self._pipeline.handle(frame_from_tiktoklive, event.to_dict())
        except Exception:  # raised into the library's frame loop, a bug would cost the connection
            self._metrics.parse_failures("handler").inc()
            log.exception("gift handler failed", room=self._unique_id)
