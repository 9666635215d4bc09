"""Reading what a service under test sends to its NOTIFY_SOCKET (a unix datagram socket the test binds)."""

from __future__ import annotations

import socket
import time


def until(notify: socket.socket, prefix: bytes) -> list[bytes]:
    """Every notice up to and including the first that starts with ``prefix``."""
    seen: list[bytes] = []
    while not seen or not seen[-1].startswith(prefix):
        seen.append(notify.recv(1024))
    return seen


def collect(notify: socket.socket, seconds: float) -> list[tuple[float, bytes]]:
    """(seconds from now, notice) for every notice within ``seconds``."""
    start = time.monotonic()
    notices = []
    notify.settimeout(0.05)
    while time.monotonic() - start < seconds:
        try:
            notices.append((time.monotonic() - start, notify.recv(1024)))
        except TimeoutError:
            continue
    notify.settimeout(5)
    return notices
