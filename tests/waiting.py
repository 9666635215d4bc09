"""Polling for a condition in async tests, failing with what was awaited."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def wait_until(
    check: Callable[[], bool | Awaitable[bool]], timeout_s: float = 10.0, what: str = "condition"
) -> None:
    """Poll ``check`` until it holds; fail the test (naming ``what``) after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s} s")
        await asyncio.sleep(0.01)
