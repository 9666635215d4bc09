"""Client mistakes: each one counted, few logged.

Anyone on the internet can make the API log: a line per timeout, junk packet or torn request would
let a flood fill the disk and drown real errors. Every mistake is counted by kind on /metrics;
lines are written at most ``per_minute`` times a minute, and the first line after a quiet spell
says how many were left out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter

log = structlog.get_logger(__name__)

_WINDOW_S = 60.0


class ClientErrors:
    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.counter = Counter(
            "giftwheel_api_client_errors",
            "Requests, connections and packets refused or closed for a client's mistake, by kind",
            ["kind"],
            registry=registry,
        )
        self._per_minute = per_minute
        self._clock = clock
        self._window_start = clock()
        self._logged = 0
        self._suppressed = 0

    def note(self, kind: str, detail: str, **context: Any) -> None:
        self.counter.labels(kind).inc()
        now = self._clock()
        if now - self._window_start >= _WINDOW_S:
            self._window_start = now
            self._logged = 0
        if self._logged >= self._per_minute:
            self._suppressed += 1
            return
        self._logged += 1
        if self._suppressed:
            context["suppressed_since_last"] = self._suppressed
            self._suppressed = 0
        log.info("client error", kind=kind, detail=detail, **context)
