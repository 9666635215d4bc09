"""Exponential backoff with full jitter: how long to wait before the next attempt."""

from __future__ import annotations

import random

from cloud.sources.settings import BackoffSettings


class Backoff:
    def __init__(self, settings: BackoffSettings, rng: random.Random | None = None) -> None:
        self._settings = settings
        self._rng = rng or random.Random()
        self._attempt = 0

    @property
    def attempt(self) -> int:
        return self._attempt

    def next_delay_s(self) -> float:
        """The wait before the next attempt; each call widens the window up to ``max_s``."""
        ceiling = min(self._settings.max_s, self._settings.initial_s * self._settings.factor**self._attempt)
        self._attempt += 1
        # Jitter spreads reconnects of many sources after a shared outage.
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0
