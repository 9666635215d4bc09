"""Reading what a service under test sends to its NOTIFY_SOCKET (a unix datagram socket the test binds)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def notify_socket(
    directory: Path, timeout_s: float, watchdog_s: float
) -> Iterator[tuple[socket.socket, dict[str, str]]]:
    """The socket systemd gives a Type=notify service with WatchdogSec=``watchdog_s``, bound in
    ``directory``, and the environment that tells the service about it."""
    path = directory / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(path))
        notify.settimeout(timeout_s)
        yield notify, {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": str(int(watchdog_s * 1_000_000))}


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


def drain(notify: socket.socket, quiet_s: float) -> list[bytes]:
    """Every notice until none comes for ``quiet_s`` (what a service said on its way out)."""
    notify.settimeout(quiet_s)
    notices = []
    try:
        while True:
            notices.append(notify.recv(1024))
    except TimeoutError:
        return notices
