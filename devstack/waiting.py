"""Polling for a condition from synchronous code: tests, benchmarks and the harnesses."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout_s: float = 10.0, interval_s: float = 0.02, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that; raise TimeoutError
    naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not met within {timeout_s} s (last value {value!r})")
        time.sleep(interval_s)
